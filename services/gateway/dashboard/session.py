"""The dashboard's sign-in state: session cookie, CSRF tokens, and the page dependencies."""
from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from magpie.common.controlplane.secrets import new_token
from magpie.common.errors import NotSignedIn
from magpie.gateway.api.deps import get_container
from magpie.gateway.controlplane import apps as apps_uc
from magpie.gateway.controlplane.members import member_for_token, require_role
from magpie.gateway.dashboard.web import PREFIX, CsrfFailed, Ctx

# The admin API's bearer_token() accepts this cookie too, so raw-data downloads reuse its routes.
SESSION_COOKIE = "magpie_session"
# Before sign-in there is no session to bind a token to: double-submit cookie instead.
LOGIN_CSRF_COOKIE = "magpie_login_csrf"


def csrf_for(session_token: str) -> str:
    """The session-bound CSRF token: only a holder of the HttpOnly cookie can derive it."""
    return hashlib.sha256(f"magpie-dashboard-csrf:{session_token}".encode()).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str, ttl_s: int) -> None:
    """Give the browser its session cookie."""
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl_s, path="/", httponly=True,
                        samesite="lax", secure=_secure(request))


def clear_session(response: Response, request: Request) -> None:
    """Take the session cookie back."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))


def login_csrf(request: Request) -> str:
    """The pre-sign-in token: the browser's cookie if it has one, else a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()


def set_login_csrf(response: Response, request: Request, token: str) -> None:
    """Store the pre-sign-in token in a cookie only the dashboard path receives."""
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path=PREFIX, httponly=True,
                        samesite="strict", secure=_secure(request))


def _same(given: object, expected: str | None) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given, expected or "")


async def signed_in(request: Request) -> Ctx:
    """The signed-in member's context; NotSignedIn (→ sign-in page) otherwise."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn()
    c = get_container(request)
    member = await member_for_token(c.db, token)
    apps = await apps_uc.list_apps(c.db, member.account_id)
    return Ctx(request=request, member=member, token=token, csrf=csrf_for(token), container=c, apps=apps)


Page = Annotated[Ctx, Depends(signed_in)]


async def in_app(app_id: str, ctx: Page) -> Ctx:
    """The context with application `app_id` open; another account's application is NotFound."""
    ctx.app = await apps_uc.show_app(ctx.db, ctx.member.account_id, app_id)
    return ctx


AppPage = Annotated[Ctx, Depends(in_app)]


async def posted(request: Request, ctx: Page) -> FormData:
    """A signed-in form, refused unless it carries this session's CSRF token."""
    form = await request.form()
    if not _same(form.get("csrf"), ctx.csrf):
        raise CsrfFailed()
    return form


async def admin_form(form: Annotated[FormData, Depends(posted)], ctx: Page) -> FormData:
    """A form that changes applications, keys or schemas: admins and owners only."""
    require_role(ctx.member, "admin")
    return form


async def owner_form(form: Annotated[FormData, Depends(posted)], ctx: Page) -> FormData:
    """A form that changes team members: owners only."""
    require_role(ctx.member, "owner")
    return form


async def login_form(request: Request) -> FormData:
    """The sign-in form, refused unless its token matches the cookie set with the page."""
    form = await request.form()
    if not _same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise CsrfFailed()
    return form


Form = Annotated[FormData, Depends(posted)]
AdminForm = Annotated[FormData, Depends(admin_form)]
OwnerForm = Annotated[FormData, Depends(owner_form)]
LoginForm = Annotated[FormData, Depends(login_form)]
CSRF_CHECKS = (posted, login_form)


def field(form: FormData, name: str, default: str = "") -> str:
    """A text field of a form ('' when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else default
