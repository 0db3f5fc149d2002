"""JSON API for app-key clients (`/v1`): what a key opens. Data and search routes join later."""
from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from magpie.common.controlplane.tables import Application
from magpie.common.errors import NotFound
from magpie.gateway.api.deps import Db, SearchAccess, get_container
from magpie.gateway.api.schemas import SchemaOut
from magpie.gateway.controlplane import schema

router = APIRouter(prefix="/v1", tags=["v1"])


class AppInfo(BaseModel):
    status: str = "OK"
    method: str = "app"
    app_id: str
    name: str
    image_type: str
    scope: str
    item_count: int


async def _account_of(db, app_id: str) -> int:  # noqa: ANN001
    async with db() as s:
        app = await s.get(Application, app_id)
    if app is None:
        raise NotFound(f"No application {app_id}.")
    return app.account_id


@router.get("/app", response_model=AppInfo, name="app")
async def app_info(a: SearchAccess, db: Db, request: Request) -> AppInfo:
    """The application your key opens, the key's scope (full or search), and how many items
    its index holds."""
    async with db() as s:
        app = await s.get(Application, a.app_id)
    if app is None:
        raise NotFound(f"No application {a.app_id}.")
    count = await get_container(request).index.count(a.app_id)
    return AppInfo(app_id=app.id, name=app.name, image_type=app.image_type, scope=a.scope, item_count=count)


@router.get("/apps/{app_id}/schema", response_model=SchemaOut, name="schema")
async def app_schema(app_id: str, a: SearchAccess, db: Db) -> SchemaOut:
    """The schema of your application; any other application's id is 404."""
    if app_id != a.app_id:
        raise NotFound(f"No application {app_id}.")
    return await schema.get_schema(db, await _account_of(db, app_id), app_id)
