"""Analytics reports, raw-event exports and usage: `/v1/...` with the secret key (HTTP Basic
access_key:secret_key), and the same under `/admin/v1/apps/{app_id}/...` for team members.
Thin: the figures are computed in magpie.analytics.reports."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from magpie.analytics import reports
from magpie.common.errors import InvalidRequest, Unavailable
from magpie.common.ports.analytics import AnalyticsStore, ExportFormat, ReportQuery
from magpie.gateway.api.deps import DataAccess, Db, Viewer, get_container
from magpie.gateway.controlplane.apps import get_app

router = APIRouter(tags=["analytics"])
MAX_DAYS = 366
DEFAULT_DAYS = 30
_MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_REPORT_DOC = reports.__doc__


def analytics_store(request: Request) -> AnalyticsStore:
    """The process's analytics store (503 where this process runs none)."""
    store = getattr(get_container(request), "analytics", None)
    if store is None:
        raise Unavailable("Analytics is not enabled in this process.")
    return store


def date_range(
    date_from: date | None = Query(None, alias="from",
                                   description="First UTC day (default: 29 days before `to`)."),
    date_to: date | None = Query(None, alias="to", description="Last UTC day, included (default: today)."),
) -> tuple[date, date]:
    """The report's days: at most 366, from 2000-01-01 on."""
    date_to = date_to or datetime.now(UTC).date()
    date_from = date_from or date_to - timedelta(days=DEFAULT_DAYS - 1)
    if date_from > date_to:
        raise InvalidRequest("`from` must not be after `to`.")
    if (date_to - date_from).days >= MAX_DAYS or date_from < date(2000, 1, 1):
        raise InvalidRequest(f"A range covers at most {MAX_DAYS} days, from 2000-01-01 on.")
    return date_from, date_to


Store = Annotated[AnalyticsStore, Depends(analytics_store)]
Range = Annotated[tuple[date, date], Depends(date_range)]
Solution = Annotated[str, Query(max_length=64, description="A search method (e.g. `search`) or a "
                                "widget/placement; empty = all.")]
Top = Annotated[int, Query(ge=1, le=100, description="How many top clicked products.")]


async def export_response(store: AnalyticsStore, app_id: str, rng: tuple[date, date],
                          fmt: ExportFormat) -> StreamingResponse:
    """Stream the raw events; the first chunk is read first, so a failing query still gets a
    proper error response instead of a cut-off download."""
    chunks = store.export_events(app_id, rng[0], rng[1], fmt)
    try:
        first = await anext(chunks, b"")
    except BaseException:
        await chunks.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    name = f"events-{app_id}-{rng[0].isoformat()}-{rng[1].isoformat()}.{fmt}"
    return StreamingResponse(body(), media_type=_MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def own_app(db: Any, member: Any, app_id: str) -> None:
    """NotFound unless the application belongs to the member's account."""
    async with db() as s:
        await get_app(s, member.account_id, app_id)


# --- /v1, secret key -----------------------------------------------------------------------
@router.get("/v1/analytics/report", name="analytics/report", summary="Analytics report",
            description=_REPORT_DOC)
async def v1_report(a: DataAccess, store: Store, rng: Range, solution: Solution = "",
                    top: Top = 10) -> dict[str, Any]:
    """Searches, views, clicks, CTR, add-to-cart and conversion rates, revenue, click rank."""
    body = await reports.report(store, ReportQuery(a.app_id, rng[0], rng[1], solution), top)
    return {"status": "OK", "method": "analytics/report", **body}


@router.get("/v1/analytics/events.csv", name="analytics/events.csv", response_class=StreamingResponse)
async def v1_events_csv(a: DataAccess, store: Store, rng: Range) -> StreamingResponse:
    """The raw tracked events of the range (deduplicated), CSV with a header row, streamed."""
    return await export_response(store, a.app_id, rng, "csv")


@router.get("/v1/analytics/events.parquet", name="analytics/events.parquet", response_class=StreamingResponse)
async def v1_events_parquet(a: DataAccess, store: Store, rng: Range) -> StreamingResponse:
    """The raw tracked events of the range (deduplicated) as Parquet, streamed."""
    return await export_response(store, a.app_id, rng, "parquet")


@router.get("/v1/usage", name="usage")
async def v1_usage(request: Request, a: DataAccess, store: Store, rng: Range) -> dict[str, Any]:
    """Usage statistics: API calls by endpoint, searches by method, tracked events by action,
    ingested items by stage and outcome (totals and per day), and the bytes the application's
    images, thumbnails and vectors take in the object store now."""
    stored = await get_container(request).objects.usage_bytes(f"{a.app_id}/")
    return {"status": "OK", "method": "usage", **await reports.usage(store, a.app_id, *rng),
            "stored_bytes": stored}


# --- /admin/v1, team members -----------------------------------------------------------------
@router.get("/admin/v1/apps/{app_id}/analytics/report", tags=["admin"], summary="Analytics report",
            description=_REPORT_DOC)
async def admin_report(app_id: str, m: Viewer, db: Db, store: Store, rng: Range,
                       solution: Solution = "", top: Top = 10) -> dict[str, Any]:
    """An application's analytics report (see the formulas above)."""
    await own_app(db, m, app_id)
    return await reports.report(store, ReportQuery(app_id, rng[0], rng[1], solution), top)


@router.get("/admin/v1/apps/{app_id}/analytics/events.csv", tags=["admin"], response_class=StreamingResponse)
async def admin_events_csv(app_id: str, m: Viewer, db: Db, store: Store, rng: Range) -> StreamingResponse:
    """An application's raw events as CSV, streamed."""
    await own_app(db, m, app_id)
    return await export_response(store, app_id, rng, "csv")


@router.get("/admin/v1/apps/{app_id}/analytics/events.parquet", tags=["admin"],
            response_class=StreamingResponse)
async def admin_events_parquet(app_id: str, m: Viewer, db: Db, store: Store, rng: Range) -> StreamingResponse:
    """An application's raw events as Parquet, streamed."""
    await own_app(db, m, app_id)
    return await export_response(store, app_id, rng, "parquet")


@router.get("/admin/v1/apps/{app_id}/usage", tags=["admin"])
async def admin_usage(request: Request, app_id: str, m: Viewer, db: Db, store: Store,
                      rng: Range) -> dict[str, Any]:
    """An application's usage statistics, with its stored bytes."""
    await own_app(db, m, app_id)
    stored = await get_container(request).objects.usage_bytes(f"{app_id}/")
    return {**await reports.usage(store, app_id, *rng), "stored_bytes": stored}
