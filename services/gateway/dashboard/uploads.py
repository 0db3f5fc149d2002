"""Your Images → Upload: CSV upload (with the schema confirmation screen) over the ingestion's
upload use cases, its progress, and the SFTP setup (credentials, keys, exact file names) over the
SFTP account use cases the admin API and `magpie sftp` call."""
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
from magpie.gateway.api.sftp import PublicKeyIn, UserIn
from magpie.gateway.dashboard.forms import FormInvalid, checkbox, parse, submit
from magpie.gateway.dashboard.session import AdminForm, AppPage, field
from magpie.gateway.dashboard.solutions import has_route, search_key
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render
from magpie.ingestion import uploads as uploads_uc
from magpie.ingestion.sftp import accounts as sftp_uc

router = APIRouter(route_class=DashboardRoute)
RECENT = 20
SFTP_MODES = (  # the mode, what it does; the file names come from sftp_uc.describe()
    ("FULL", "FULL (default)", "replaces the whole catalog with the file's contents"),
    ("INCREMENT", "INCREMENT", "adds new items and updates existing ones"),
    ("DELETE", "DELETE (optional, with INCREMENT)", "removes the listed im_name after the increment is indexed"),
)
SFTP_DONE = {"sftp-key-added": "SSH key added.", "sftp-key-removed": "SSH key removed.",
             "sftp-deleted": "SFTP account removed; the uploaded files and feeds stay."}


def _deps(ctx: Ctx) -> Any:
    return uploads_api.deps_of(ctx.container)


async def _recent(ctx: Ctx) -> list[Any]:
    async with ctx.container.ingest.store.db() as s:
        rows = await s.scalars(select(uploads_uc.Upload).where(uploads_uc.Upload.app_id == ctx.app.app_id)
                               .order_by(uploads_uc.Upload.created_at.desc()).limit(RECENT))
        return list(rows)


def _sftp_where(request: Request, ctx: Ctx) -> tuple[str, int]:
    """The SFTP host and port, as the admin API gives them; a wildcard listen address becomes
    the host name this page was opened with."""
    return ctx.container.settings.sftp_address(request.url.hostname)


def _sftp_modes(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per live app key (the file name prefix), each mode with its exact data and marker names."""
    out = []
    for names in info["files"]:
        rows = [{"mode": mode, "label": label, "what": what, "data": names[mode]["data"],
                 "marker": names[mode]["marker"], "data_short": names[mode].get("data_short"),
                 "marker_short": names[mode].get("marker_short")} for mode, label, what in SFTP_MODES]
        out.append({"app_key": names["app_key"], "rows": rows})
    return out


async def _page(request: Request, ctx: Ctx, status: int = 200, **values: Any) -> Response:
    assert ctx.app is not None
    app_key = await search_key(ctx)
    info = await sftp_uc.describe(ctx.db, ctx.app.app_id, *_sftp_where(request, ctx))
    values.setdefault("done", SFTP_DONE.get(request.query_params.get("done", "")))
    return render(request, "upload.html", ctx, status=status, max_mb=uploads_uc.MAX_UPLOAD_BYTES >> 20,
                  recent=await _recent(ctx), sftp=has_route(request, "/v1/feeds", "GET"),
                  sftp_running=ctx.container.settings.sftp_enabled, sftp_info=info,
                  sftp_files=_sftp_modes(info), max_sftp_keys=sftp_uc.MAX_KEYS, app_key=app_key, **values)


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


# --- SFTP setup: the same use cases as POST/DELETE /admin/v1/apps/{app_id}/sftp... ---

@router.post("/apps/{app_id}/sftp")
async def sftp_create_user(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Create the application's SFTP account; its password is shown on this answer only."""
    values = {"sftp_username": field(form, "username").strip()}
    try:
        body = parse(UserIn, {"username": values["sftp_username"] or None})
        _, password = await submit(sftp_uc.create_user(ctx.db, app_id, body.username), "sftp_username")
    except FormInvalid as exc:
        errors = {("sftp_username" if k == "username" else k): v for k, v in exc.errors.items()}
        return await _page(request, ctx, status=400, errors=errors, values=values)
    sftp_uc.app_folder(ctx.container.settings.data_dir / "sftp", app_id)
    return await _page(request, ctx, sftp_password=password, done="SFTP account created.")


@router.post("/apps/{app_id}/sftp/password")
async def sftp_rotate_password(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Replace the password at once (the old one stops working); the new one is shown only now."""
    try:
        _, password = await submit(sftp_uc.rotate_password(ctx.db, app_id), "sftp_password")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors)
    return await _page(request, ctx, sftp_password=password, done="New SFTP password set.")


@router.post("/apps/{app_id}/sftp/keys")
async def sftp_add_key(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Allow an SSH public key (OpenSSH one-line format) to log in as the application's account."""
    values = {"public_key": field(form, "public_key")}
    try:
        body = parse(PublicKeyIn, values)
        await submit(sftp_uc.add_key(ctx.db, app_id, body.public_key), "public_key")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors, values=values)
    return redirect(request, f"/apps/{app_id}/upload?done=sftp-key-added#sftp-setup")


@router.post("/apps/{app_id}/sftp/keys/remove")
async def sftp_remove_key(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Stop a key (by its fingerprint, sent in the form: it may contain '/') from logging in."""
    await sftp_uc.remove_key(ctx.db, app_id, field(form, "fingerprint"))
    return redirect(request, f"/apps/{app_id}/upload?done=sftp-key-removed#sftp-setup")


@router.post("/apps/{app_id}/sftp/delete")
async def sftp_delete_user(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Remove the SFTP account and its keys (uploaded files and feeds stay)."""
    await sftp_uc.delete_account(ctx.db, app_id)
    return redirect(request, f"/apps/{app_id}/upload?done=sftp-deleted#sftp-setup")
