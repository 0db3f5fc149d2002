"""Your Images → Status: Data API transactions and feeds, their progress and errors."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from magpie.gateway.dashboard.session import AppPage
from magpie.gateway.dashboard.web import DashboardRoute, render

router = APIRouter(route_class=DashboardRoute)
LATEST = 50
ERRORS_PER_PAGE = 20


@router.get("/apps/{app_id}/status")
async def status(request: Request, ctx: AppPage) -> Response:
    """The latest transactions (Data API, CSV, SFTP feeds) with their progress."""
    assert ctx.app is not None
    store = ctx.container.ingest.store
    rows = await store.list_transactions(ctx.app.app_id, LATEST)
    progress = [(t, await store.status(ctx.app.app_id, t.trans_id, 1, 3)) for t in rows]
    running = any(st.processed_percent < 100 for _, st in progress)
    return render(request, "status.html", ctx, progress=progress, running=running, latest=LATEST)


@router.get("/apps/{app_id}/status/{trans_id}")
async def transaction(request: Request, trans_id: int, ctx: AppPage,
                      page: int = Query(1, ge=1, le=100_000)) -> Response:
    """One transaction with a page of its per-item errors."""
    assert ctx.app is not None
    st = await ctx.container.ingest.store.status(ctx.app.app_id, trans_id, page, ERRORS_PER_PAGE)
    pages = max(1, -(-st.fail_count // ERRORS_PER_PAGE))
    return render(request, "transaction.html", ctx, st=st, page=page, pages=pages,
                  running=st.processed_percent < 100)
