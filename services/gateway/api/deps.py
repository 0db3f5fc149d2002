"""Request dependencies: the container, the signed-in member, the app key's access."""
from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.tables import Member
from magpie.common.errors import InvalidCredentials, NotSignedIn, Unauthorized
from magpie.gateway.bootstrap import Container
from magpie.gateway.controlplane import access
from magpie.gateway.controlplane.access import AppAccess
from magpie.gateway.controlplane.members import member_for_token, require_role


def get_container(request: Request) -> Container:
    """The process's container, opened in the lifespan."""
    return request.app.state.container


async def get_db(request: Request) -> async_sessionmaker:
    """The control-plane session factory."""
    # Async on purpose: FastAPI runs sync dependencies in its thread pool, a hop per request.
    return request.app.state.container.db


Db = Annotated[async_sessionmaker, Depends(get_db)]


def bearer_token(request: Request) -> str:
    """The session token from `Authorization: Bearer` (or the dashboard's cookie)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    cookie = request.cookies.get("magpie_session")
    if cookie:
        return cookie
    raise NotSignedIn()


async def current_member(request: Request, db: Db) -> Member:
    """The signed-in team member."""
    return await member_for_token(db, bearer_token(request))


CurrentMember = Annotated[Member, Depends(current_member)]


def role(required: str):  # noqa: ANN201 - returns a FastAPI dependency
    """A dependency that lets only members with at least `required` through."""

    async def _check(member: CurrentMember) -> Member:
        require_role(member, required)
        return member

    return _check


Viewer = Annotated[Member, Depends(role("viewer"))]
Admin = Annotated[Member, Depends(role("admin"))]
Owner = Annotated[Member, Depends(role("owner"))]


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidCredentials() from None
    return user, password


async def app_access(request: Request, db: Db) -> AppAccess:
    """Authenticate by HTTP Basic access:secret (full) or an `access_key`/`app_key` parameter
    holding a search-only app key (both ViSearch styles)."""
    request.state.app_id = None
    basic = _basic(request)
    if basic is not None:
        found = await access.by_secret(db, *basic)
        request.state.app_id = found.app_id  # counted per endpoint in the usage statistics
        return found
    key = request.query_params.get("access_key") or request.query_params.get("app_key")
    if key is None and request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form()
            value = form.get("access_key") or form.get("app_key")
            key = value if isinstance(value, str) else None
    if not key:
        raise InvalidCredentials()
    found = await access.by_app_key(db, key)
    request.state.app_id = found.app_id
    return found


async def full_access(a: Annotated[AppAccess, Depends(app_access)]) -> AppAccess:
    """Data routes need the secret key; a search-only app key gets 403."""
    if a.scope != "full":
        raise Unauthorized("This key is search-only; data operations need the access key and secret key.")
    return a


SearchAccess = Annotated[AppAccess, Depends(app_access)]
DataAccess = Annotated[AppAccess, Depends(full_access)]
