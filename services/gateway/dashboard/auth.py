"""Sign-in and sign-out pages, over the control plane's member sessions."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from magpie.common.errors import NotSignedIn
from magpie.gateway.api.deps import get_container
from magpie.gateway.api.schemas import SignIn
from magpie.gateway.controlplane import members
from magpie.gateway.dashboard.forms import FormInvalid, parse
from magpie.gateway.dashboard.session import (
    Form,
    LoginForm,
    Page,
    clear_session,
    field,
    login_csrf,
    set_login_csrf,
    set_session,
)
from magpie.gateway.dashboard.web import DashboardRoute, base_path, render, safe_next

router = APIRouter(route_class=DashboardRoute)


def _page(request: Request, *, status: int = 200, **values: object) -> Response:
    token = login_csrf(request)
    response = render(request, "sign_in.html", None, status=status, login_csrf=token, **values)
    set_login_csrf(response, request, token)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "") -> Response:  # noqa: A002 - the query name
    """The sign-in form."""
    return _page(request, next=safe_next(request, next))


@router.post("/sign-in")
async def sign_in(request: Request, form: LoginForm) -> Response:
    """Check the password, open a session and set its cookie."""
    values = {"email": field(form, "email"), "password": field(form, "password")}
    target = safe_next(request, field(form, "next"))
    try:
        body = parse(SignIn, values)
        ttl = get_container(request).settings.session_ttl_s
        session = await members.sign_in(get_container(request).db, body.email, body.password, ttl)
    except FormInvalid as exc:
        return _page(request, status=400, errors=exc.errors, values={"email": values["email"]}, next=target)
    except NotSignedIn as err:
        return _page(request, status=401, errors={"password": err.detail},
                     values={"email": values["email"]}, next=target)
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, session.token, ttl)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, ctx: Page, form: Form) -> Response:
    """End the session and drop its cookie."""
    await members.sign_out(ctx.db, ctx.token)
    response = RedirectResponse(f"{base_path(request)}/sign-in", status_code=303)
    clear_session(response, request)
    return response
