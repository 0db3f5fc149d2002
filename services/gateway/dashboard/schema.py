"""Your Images → Schema: add, edit and remove fields; the recommended fields as a preset."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from magpie.common.controlplane.schema_rules import FIELD_TYPES, MAX_CUSTOM_FIELDS
from magpie.common.errors import MagpieError
from magpie.gateway.api.schemas import FieldIn, FieldPatch
from magpie.gateway.controlplane import schema as schema_uc
from magpie.gateway.dashboard.forms import FormInvalid, checkbox, parse, submit
from magpie.gateway.dashboard.session import AdminForm, AppPage, field
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render

router = APIRouter(route_class=DashboardRoute)
DONE = {"added": "Field added.", "updated": "Field updated.", "removed": "Field removed with its data.",
        "preset": "Recommended fields added."}


def _culprit(form_key: str, submitted: str | None = None):  # noqa: ANN202 - returns a mapper
    """Show a SchemaError next to the row of the field it names; the add form's own field
    when it names the one being added (or none)."""

    def where(err: MagpieError) -> str:
        named = getattr(err, "field", None)
        return form_key if named is None or named == submitted else f"field:{named}"

    return where


async def _page(request: Request, ctx: Ctx, status: int = 200, **values: object) -> Response:
    assert ctx.app is not None
    current = await schema_uc.get_schema(ctx.db, ctx.member.account_id, ctx.app.app_id)
    names = {f.name for f in current.fields}
    preset = [f for f in schema_uc.preset() if f.name not in names]
    page = {"done": DONE.get(request.query_params.get("done", "")), "values": {"type": "string"}, **values}
    return render(request, "schema.html", ctx, status=status, schema=current, preset=preset,
                  types=FIELD_TYPES, max_fields=MAX_CUSTOM_FIELDS, **page)


@router.get("/apps/{app_id}/schema")
async def schema_page(request: Request, ctx: AppPage) -> Response:
    """The schema with its editing forms."""
    return await _page(request, ctx)


@router.post("/apps/{app_id}/schema/fields")
async def add_field(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Append one field, checked by the schema rules."""
    values = {"name": field(form, "name"), "type": field(form, "type"),
              "searchable": checkbox(form.get("searchable"))}
    try:
        body = parse(FieldIn, values)
        await submit(schema_uc.add_field(ctx.db, ctx.member.account_id, app_id, body),
                     _culprit("name", body.name))
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors, values=values)
    return redirect(request, f"/apps/{app_id}/schema?done=added")


@router.post("/apps/{app_id}/schema/preset")
async def add_preset(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Append the chosen recommended fields in one schema change."""
    chosen = set(form.getlist("preset"))
    current = await schema_uc.get_schema(ctx.db, ctx.member.account_id, app_id)
    fields = [FieldIn(name=f.name, type=f.type, searchable=f.searchable) for f in current.fields]
    fields += [FieldIn(name=f.name, type=f.type, searchable=f.searchable)
               for f in schema_uc.preset() if f.name in chosen and f.name not in {x.name for x in fields}]
    try:
        await submit(schema_uc.set_schema(ctx.db, ctx.member.account_id, app_id, fields), "preset")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors)
    return redirect(request, f"/apps/{app_id}/schema?done=preset")


@router.post("/apps/{app_id}/schema/fields/{name}")
async def update_field(request: Request, app_id: str, name: str, ctx: AppPage, form: AdminForm) -> Response:
    """Change a field's type (its data is dropped) or searchable flag."""
    values = {"type": field(form, "type") or None, "searchable": checkbox(form.get("searchable"))}
    try:
        patch = parse(FieldPatch, values)
        await submit(schema_uc.update_field(ctx.db, ctx.member.account_id, app_id, name, patch),
                     _culprit(f"field:{name}"))
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors)
    return redirect(request, f"/apps/{app_id}/schema?done=updated")


@router.post("/apps/{app_id}/schema/fields/{name}/remove")
async def remove_field(request: Request, app_id: str, name: str, ctx: AppPage, form: AdminForm) -> Response:
    """Remove a field and, with it, its data."""
    await schema_uc.remove_field(ctx.db, ctx.member.account_id, app_id, name)
    return redirect(request, f"/apps/{app_id}/schema?done=removed")
