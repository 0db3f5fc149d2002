"""Team members: list for everyone; add, change role and remove for owners."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from magpie.gateway.api.schemas import MemberIn, MemberPatch
from magpie.gateway.controlplane import members as members_uc
from magpie.gateway.dashboard.forms import FormInvalid, parse, submit
from magpie.gateway.dashboard.session import OwnerForm, Page, field
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render

router = APIRouter(route_class=DashboardRoute)
ROLES = ("viewer", "admin", "owner")
DONE = {"added": "Member added.", "updated": "Role changed.", "removed": "Member removed."}


async def _page(request: Request, ctx: Ctx, status: int = 200, **values: object) -> Response:
    team = await members_uc.list_members(ctx.db, ctx.member.account_id)
    page = {"values": {"role": "viewer"}, "done": DONE.get(request.query_params.get("done", "")), **values}
    return render(request, "members.html", ctx, status=status, team=team, roles=ROLES, **page)


@router.get("/members")
async def members(request: Request, ctx: Page) -> Response:
    """The account's team."""
    return await _page(request, ctx)


@router.post("/members")
async def add_member(request: Request, ctx: Page, form: OwnerForm) -> Response:
    """Add a member with a first password (they change it with the CLI or API)."""
    values = {k: field(form, k) for k in ("email", "name", "role", "password")}
    try:
        body = parse(MemberIn, values)
        await submit(members_uc.add_member(ctx.db, ctx.member.account_id, body), "email")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors, values={**values, "password": ""})
    return redirect(request, "/members?done=added")


@router.post("/members/{member_id}")
async def change_role(request: Request, member_id: int, ctx: Page, form: OwnerForm) -> Response:
    """Change a member's role; the last owner stays an owner."""
    try:
        patch = parse(MemberPatch, {"role": field(form, "role")})
        await submit(members_uc.update_member(ctx.db, ctx.member.account_id, member_id, patch),
                     f"member:{member_id}")
    except FormInvalid as exc:
        row = {f"member:{member_id}": message for message in exc.errors.values()}
        return await _page(request, ctx, status=400, errors=row)
    return redirect(request, "/members?done=updated")


@router.post("/members/{member_id}/remove")
async def remove_member(request: Request, member_id: int, ctx: Page, form: OwnerForm) -> Response:
    """Remove a member and end their sessions; the last owner stays."""
    try:
        await submit(members_uc.remove_member(ctx.db, ctx.member.account_id, member_id), f"member:{member_id}")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors)
    return redirect(request, "/members?done=removed")
