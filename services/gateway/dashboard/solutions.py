"""Try it, over the search API that another issue delivers: the page looks for its routes at
run time and says plainly when they are not there yet."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from magpie.gateway.controlplane import apps as apps_uc
from magpie.gateway.controlplane import schema as schema_uc
from magpie.gateway.dashboard.session import AppPage
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, render, served_routes

router = APIRouter(route_class=DashboardRoute)


def has_route(request: Request, path: str, method: str) -> bool:
    """Whether this server answers `method path` (the search API lands separately)."""
    return any(r.path == path and method in (r.methods or ()) for r in served_routes(request.app.routes))


async def search_key(ctx: Ctx) -> str | None:
    """The application's first live app key (search-only), if any."""
    assert ctx.app is not None
    keys = await apps_uc.list_keys(ctx.db, ctx.member.account_id, ctx.app.app_id)
    return next((k.app_key for k in keys if not k.revoked_at), None)


@router.get("/apps/{app_id}/try")
async def try_it(request: Request, ctx: AppPage, im_name: str = "") -> Response:
    """Try it: search by uploaded image or find similar to a catalog item, with filters, facets
    and scores, through the public API with the application's search-only key."""
    assert ctx.app is not None
    current = await schema_uc.get_schema(ctx.db, ctx.member.account_id, ctx.app.app_id)
    available = {"search": has_route(request, "/search", "GET"),
                 "uploadsearch": has_route(request, "/uploadsearch", "POST")}
    return render(request, "try.html", ctx, available=available, app_key=await search_key(ctx),
                  searchable=[f for f in current.fields if f.searchable],
                  facetable=[f.name for f in current.fields if f.searchable and f.type != "text"],
                  values={"im_name": im_name[:128]})
