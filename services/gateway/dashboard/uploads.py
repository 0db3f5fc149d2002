"""Your Images → Upload: CSV upload (with the schema confirmation screen) over the ingestion's
upload use cases, its progress, and the SFTP setup page (SFTP itself lands separately)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.datastructures import UploadFile

from magpie.common.controlplane.schema_rules import FIELD_TYPES
from magpie.common.errors import MagpieError
from magpie.gateway.api import uploads as uploads_api
from magpie.gateway.api.schemas import FieldIn
from magpie.gateway.dashboard.forms import FormInvalid, checkbox, parse, submit
from magpie.gateway.dashboard.session import AdminForm, AppPage
from magpie.gateway.dashboard.solutions import has_route, search_key
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render
from magpie.ingestion import uploads as uploads_uc

router = APIRouter(route_class=DashboardRoute)
RECENT = 20
SFTP_MODES = (
    ("FULL (default)", "replaces the whole catalog with the file's contents", "{k}.csv.gz or {k}_FULL.csv.gz"),
    ("INCREMENT", "adds new items and updates existing ones", "{k}_INCREMENT.csv.gz"),
    ("DELETE (optional, with INCREMENT)", "removes the listed im_name after the increment is indexed",
     "{k}_DELETE.csv.gz"),
)


def _deps(ctx: Ctx) -> Any:
    return uploads_api.deps_of(ctx.container)


async def _recent(ctx: Ctx) -> list[Any]:
    async with ctx.container.ingest.store.db() as s:
        rows = await s.scalars(select(uploads_uc.Upload).where(uploads_uc.Upload.app_id == ctx.app.app_id)
                               .order_by(uploads_uc.Upload.created_at.desc()).limit(RECENT))
        return list(rows)


async def _page(request: Request, ctx: Ctx, status: int = 200, **values: object) -> Response:
    assert ctx.app is not None
    app_key = await search_key(ctx)
    modes = [(m, what, names.format(k=app_key or "APP_KEY")) for m, what, names in SFTP_MODES]
    return render(request, "upload.html", ctx, status=status, max_mb=uploads_uc.MAX_UPLOAD_BYTES >> 20,
                  recent=await _recent(ctx), sftp=has_route(request, "/v1/feeds", "GET"),
                  modes=modes, app_key=app_key, **values)


@router.get("/apps/{app_id}/upload")
async def upload_page(request: Request, ctx: AppPage) -> Response:
    """The CSV form, recent uploads, and the SFTP setup."""
    return await _page(request, ctx)


@router.post("/apps/{app_id}/upload")
async def upload(request: Request, app_id: str, ctx: AppPage,
                 _: Annotated[None, Depends(uploads_api.check_length)], form: AdminForm) -> Response:
    """Receive a CSV; it is processed at once, or waits for its proposed schema to be confirmed."""
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        return await _page(request, ctx, status=400, errors={"file": "Choose a .csv file to upload."})
    try:
        up = await submit(uploads_uc.receive(_deps(ctx), app_id, file.filename, file), "file")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors)
    return redirect(request, f"/apps/{app_id}/uploads/{up.upload_id}")


async def _detail(request: Request, ctx: Ctx, upload_id: str, status: int = 200, **values: object) -> Response:
    assert ctx.app is not None
    up = await uploads_uc.get(_deps(ctx), ctx.app.app_id, upload_id)
    st = None
    if up.trans_id is not None:
        st = await ctx.container.ingest.store.status(ctx.app.app_id, up.trans_id, 1, 1)
    running = up.state == uploads_uc.PROCESSING or (st is not None and st.processed_percent < 100)
    return render(request, "upload_detail.html", ctx, status=status, up=up, st=st, types=FIELD_TYPES,
                  needs=up.state == uploads_uc.NEEDS_CONFIRMATION, running=running, **values)


@router.get("/apps/{app_id}/uploads/{upload_id}")
async def upload_detail(request: Request, upload_id: str, ctx: AppPage) -> Response:
    """One upload: the confirmation screen, or its progress and outcome."""
    return await _detail(request, ctx, upload_id)


def _confirmed_fields(form: Any, proposal: list[dict[str, Any]]) -> list[FieldIn]:
    chosen = set(form.getlist("include"))
    return [parse(FieldIn, {"name": f["name"], "type": form.get(f"type.{f['name']}", f["type"]),
                            "searchable": checkbox(form.get(f"searchable.{f['name']}"))})
            for f in proposal if f["name"] in chosen]


@router.post("/apps/{app_id}/uploads/{upload_id}/confirm")
async def confirm(request: Request, app_id: str, upload_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Set the schema as confirmed (and edited) on the screen, then process the file."""
    up = await uploads_uc.get(_deps(ctx), app_id, upload_id)
    proposal = (up.proposal or {}).get("fields", [])

    def where(err: MagpieError) -> str:  # a schema rule names its field: show it on that row
        named = getattr(err, "field", None)
        return f"field:{named}" if named else "confirm"

    try:
        fields = _confirmed_fields(form, proposal)
        await submit(uploads_uc.confirm(_deps(ctx), app_id, upload_id, fields), where)
    except FormInvalid as exc:
        return await _detail(request, ctx, upload_id, status=400, errors=exc.errors)
    return redirect(request, f"/apps/{app_id}/uploads/{upload_id}")
