"""Dashboard plumbing: the route class that turns errors into pages, the request context,
templates and response headers."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from magpie.common.controlplane.tables import Member
from magpie.common.errors import InvalidRequest, MagpieError, NotSignedIn
from magpie.gateway.api.schemas import AppOut
from magpie.gateway.bootstrap import Container
from magpie.gateway.controlplane.members import ROLE_RANK

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/dashboard"
templates = Jinja2Templates(directory=HERE / "templates")
# Scripts only from our own origin; Plotly injects <style> elements, hence 'unsafe-inline' for styles.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'self'; object-src 'none'")


class CsrfFailed(MagpieError):
    """A dashboard form arrived without the token this session issued."""

    code, http_status = 12, 403
    message = "This form has expired or did not come from the dashboard; reload the page and try again."


@dataclass
class Ctx:
    """What every signed-in page needs: who, their applications, the open one, the CSRF token."""

    request: Request
    member: Member
    token: str
    csrf: str
    container: Container
    apps: list[AppOut]
    app: AppOut | None = None

    @property
    def db(self) -> Any:
        """The control-plane session factory."""
        return self.container.db

    @property
    def can_edit(self) -> bool:
        """Admins and owners change applications, keys and schemas."""
        return ROLE_RANK[self.member.role] >= ROLE_RANK["admin"]

    @property
    def is_owner(self) -> bool:
        """Only owners manage team members."""
        return self.member.role == "owner"


def served_routes(routes: Sequence[Any]) -> Iterator[Any]:
    """Every route with its path, methods, endpoint and dependant, included routers expanded."""
    try:  # newer FastAPI keeps included routers lazy; this is its public way to walk them
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies included routes into the list itself
        yield from routes
        return
    yield from iter_route_contexts(routes)


def base_path(request: Request) -> str:
    """The dashboard's URL prefix, honouring a proxy's root_path."""
    return request.scope.get("root_path", "") + PREFIX


def safe_next(request: Request, target: str | None) -> str:
    """A post-sign-in target inside the dashboard only (no open redirects)."""
    base = base_path(request)
    if target and target.startswith(base) and not target.startswith("//") and "\\" not in target:
        return target
    return base


def render(request: Request, template: str, ctx: Ctx | None = None, status: int = 200,
           **values: Any) -> Response:
    """Render a template with the context, the base path and any page values."""
    return templates.TemplateResponse(
        request, template, {"ctx": ctx, "base": base_path(request), "root": request.scope.get("root_path", ""),
                            "errors": {}, "values": {}, **values},
        status_code=status)


def redirect(request: Request, path: str) -> RedirectResponse:
    """303 See Other to a dashboard path (POST → GET)."""
    return RedirectResponse(base_path(request) + path, status_code=303)


def harden(response: Response) -> Response:
    """Security headers on every dashboard answer; pages are never cached."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(request: Request, err: MagpieError) -> Response:
    return render(request, "error.html", None, status=err.http_status, error=err,
                  title={403: "Not allowed", 404: "Not found"}.get(err.http_status, "Error"))


class DashboardRoute(APIRoute):
    """Answers errors with HTML (sign-in redirect, 403, 404, 500) instead of the API formats."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        """Wrap FastAPI's handler; dependencies run inside it, so their errors land here too."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except NotSignedIn:
                target = base_path(request)
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"{base_path(request)}/sign-in?next={quote(target)}",
                                            status_code=303)
            except MagpieError as err:  # not allowed, not found, or refused outside any form field
                response = _error_page(request, err)
            except RequestValidationError as exc:  # a hand-edited URL: say which parameter
                where = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
                response = _error_page(request, InvalidRequest(where or None))
            except Exception:  # a page, not the API's JSON, even when something breaks
                log.exception("dashboard error on %s %s", request.method, request.url.path)
                response = _error_page(request, MagpieError())
            return harden(response)

        return guarded
