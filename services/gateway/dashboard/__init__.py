"""The merchant's web console at /dashboard: server-rendered pages over the control-plane use
cases. Wire it with `app.include_router(router)` and mount `static_files()` at STATIC_PATH."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

from magpie.gateway.dashboard import (
    apps, auth, catalog, keys, members, reports, schema, solutions, status, uploads,
)
from magpie.gateway.dashboard.web import HERE, PREFIX, DashboardRoute

STATIC_PATH = f"{PREFIX}/static"
router = APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)
# "/dashboard" itself: a sub-router cannot declare an empty path, so it is added here.
router.add_api_route("", apps.home, methods=["GET"])
for _module in (auth, apps, keys, schema, uploads, status, catalog, solutions, reports, members):
    router.include_router(_module.router)


def static_files() -> StaticFiles:
    """Our CSS and JS, plus plotly.min.js straight from the plotly wheel (a declared dependency)."""
    return StaticFiles(directory=HERE / "static", packages=[("plotly", "package_data")])
