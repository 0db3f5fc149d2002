"""Resolving app keys to the one application they open, with their scope."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.secrets import constant_time_equal, hash_token
from magpie.common.controlplane.tables import AppKey
from magpie.common.errors import InvalidCredentials

Scope = Literal["full", "search"]


@dataclass(frozen=True)
class AppAccess:
    """What a request's key opens: one application, with full or search-only scope."""

    app_id: str
    access_key: str
    scope: Scope


async def by_secret(db: async_sessionmaker, access_key: str, secret_key: str) -> AppAccess:
    """HTTP Basic access_key:secret_key gives full access to the key's application."""
    async with db() as s:
        row = await s.get(AppKey, access_key)
    if row is None or row.revoked_at is not None or not constant_time_equal(row.secret_hash, hash_token(secret_key)):
        raise InvalidCredentials()
    return AppAccess(app_id=row.app_id, access_key=row.access_key, scope="full")


async def by_app_key(db: async_sessionmaker, app_key: str) -> AppAccess:
    """A browser's search-only app key (`access_key=` or `app_key=` parameter)."""
    async with db() as s:
        row = await s.scalar(select(AppKey).where(AppKey.app_key == app_key))
    if row is None or row.revoked_at is not None:
        raise InvalidCredentials()
    return AppAccess(app_id=row.app_id, access_key=row.access_key, scope="search")
