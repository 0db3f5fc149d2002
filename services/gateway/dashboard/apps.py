"""Applications: list, create, switch, overview, rename, delete with confirmation."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from magpie.common.image_types import IMAGE_TYPES
from magpie.gateway.api.schemas import AppIn, AppPatch
from magpie.gateway.controlplane import apps as apps_uc
from magpie.gateway.dashboard.forms import FormInvalid, parse, submit
from magpie.gateway.dashboard.session import AdminForm, AppPage, Page, field
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render

router = APIRouter(route_class=DashboardRoute)
SECTIONS = ("overview", "integration", "schema", "upload", "status", "catalog", "try", "analytics", "usage")
DONE = {"deleted": "Application deleted.", "renamed": "Application renamed."}


def _list(request: Request, ctx: Ctx, status: int = 200, **values: object) -> Response:
    return render(request, "apps.html", ctx, status=status, image_types=IMAGE_TYPES,
                  done=DONE.get(request.query_params.get("done", "")), **values)


@router.get("/")
async def home(request: Request, ctx: Page) -> Response:
    """Open the first application, or the list when there is none."""
    return redirect(request, f"/apps/{ctx.apps[0].app_id}" if ctx.apps else "/apps")


@router.get("/switch")
async def switch(request: Request, ctx: Page, app_id: str, section: str = "overview") -> Response:
    """The application switcher's target (works without JavaScript)."""
    app = await apps_uc.show_app(ctx.db, ctx.member.account_id, app_id)
    section = section if section in SECTIONS else "overview"
    return redirect(request, f"/apps/{app.app_id}" + ("" if section == "overview" else f"/{section}"))


@router.get("/apps")
async def list_apps(request: Request, ctx: Page) -> Response:
    """The account's applications and the create form."""
    return _list(request, ctx)


@router.post("/apps")
async def create_app(request: Request, ctx: Page, form: AdminForm) -> Response:
    """Create an application; its first key set, secret included, is shown once."""
    values = {"name": field(form, "name"), "image_type": field(form, "image_type", "general")}
    try:
        created = await submit(apps_uc.create_app(ctx.db, ctx.member.account_id, parse(AppIn, values)),
                               "image_type")
    except FormInvalid as exc:
        return _list(request, ctx, status=400, errors=exc.errors, values=values)
    ctx.apps = await apps_uc.list_apps(ctx.db, ctx.member.account_id)
    ctx.app = await apps_uc.show_app(ctx.db, ctx.member.account_id, created.app_id)
    return render(request, "app_created.html", ctx, created=created)


async def _overview(request: Request, ctx: Ctx, status: int = 200, **values: object) -> Response:
    assert ctx.app is not None
    items = await ctx.container.index.count(ctx.app.app_id)
    keys = await apps_uc.list_keys(ctx.db, ctx.member.account_id, ctx.app.app_id)
    page = {"values": {"name": ctx.app.name}, "done": DONE.get(request.query_params.get("done", "")), **values}
    return render(request, "app_overview.html", ctx, status=status, items=items,
                  live_keys=sum(not k.revoked_at for k in keys), image_types=IMAGE_TYPES, **page)


@router.get("/apps/{app_id}")
async def overview(request: Request, ctx: AppPage) -> Response:
    """One application: facts, rename form, the way to delete it."""
    return await _overview(request, ctx)


@router.post("/apps/{app_id}/rename")
async def rename(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Give the application a new name."""
    values = {"name": field(form, "name")}
    try:
        await submit(apps_uc.rename_app(ctx.db, ctx.member.account_id, app_id, parse(AppPatch, values).name),
                     "name")
    except FormInvalid as exc:
        return await _overview(request, ctx, status=400, errors=exc.errors, values=values)
    return redirect(request, f"/apps/{app_id}?done=renamed")


@router.get("/apps/{app_id}/delete")
async def delete_page(request: Request, ctx: AppPage) -> Response:
    """The confirmation page: deleting removes the index, images and data for good."""
    return render(request, "app_delete.html", ctx)


@router.post("/apps/{app_id}/delete")
async def delete(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Delete once the application's name has been typed to confirm."""
    assert ctx.app is not None
    confirm = field(form, "confirm")
    if confirm != ctx.app.name:
        return render(request, "app_delete.html", ctx, status=400, values={"confirm": confirm},
                      errors={"confirm": "Type the application's exact name to confirm."})
    await apps_uc.delete_app(ctx.db, ctx.member.account_id, app_id)
    return redirect(request, "/apps?done=deleted")
