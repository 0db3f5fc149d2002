"""The one place errors become HTTP responses, in each API family's own format.

- Legacy ViSearch routes (`/search`, `/insert`, ...): HTTP 200 with `status: "fail"`, as the
  official SDKs expect; only bad credentials (401) and a search-only key on a data route (403)
  change the HTTP status. Search methods list error strings; data methods list error objects.
- JSON API (`/v1/...`): the same envelope with the real HTTP status and `error: {code, message}`.
- Admin API (`/admin/...`): RFC 9457 problem JSON.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from magpie.common.errors import (
    InvalidCredentials,
    InvalidRequest,
    MagpieError,
    NotFound,
    NotSignedIn,
    SchemaError,
    Unauthorized,
)

log = logging.getLogger(__name__)
DATA_METHODS = {"insert", "insert/status", "remove"}
_AUTH_ERRORS = (InvalidCredentials, Unauthorized, NotSignedIn)


def method_of(request: Request) -> str:
    """The ViSearch `method` of a request: its route's name (public routes name it), or its path."""
    name = getattr(request.scope.get("route"), "name", None)
    return name or request.url.path.strip("/") or "root"


def render(request: Request, err: MagpieError) -> JSONResponse:
    """Turn a typed error into the response format of the route family it hit."""
    path = request.url.path
    if path.startswith("/admin"):
        body = {"type": "about:blank", "title": err.__class__.__name__, "status": err.http_status,
                "detail": err.detail, "code": err.code}
        if isinstance(err, SchemaError) and err.field:
            body["field"] = err.field
        return JSONResponse(body, status_code=err.http_status, media_type="application/problem+json")
    method = method_of(request)
    if path.startswith("/v1/"):
        return JSONResponse({"status": "fail", "method": method,
                             "error": {"code": err.code, "message": err.detail}},
                            status_code=err.http_status)
    status = err.http_status if isinstance(err, _AUTH_ERRORS) else 200
    error = [err.to_item()] if method in DATA_METHODS else [err.detail]
    body = {"status": "fail", "method": method, "error": error, "result": [], "total": 0}
    if method not in DATA_METHODS:
        body.update(page=0, limit=0)
    return JSONResponse(body, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "Invalid request."


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""

    @app.exception_handler(MagpieError)
    async def _typed(request: Request, exc: MagpieError) -> JSONResponse:
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return render(request, InvalidRequest(_validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # No route or wrong verb: there is no ViSearch method to answer for, so the HTTP
        # status stays what it is (404, 405) in every family.
        err = NotFound(f"No route {request.url.path}.") if exc.status_code == 404 else InvalidRequest(str(exc.detail))
        response = render(request, err)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(request, MagpieError())
