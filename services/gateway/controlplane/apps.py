"""Applications (one catalog each) and their key sets."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from magpie.common.controlplane.outbox import add_event
from magpie.common.controlplane.secrets import hash_token, new_app_id, new_key, new_token
from magpie.common.controlplane.tables import AppKey, Application, utcnow
from magpie.common.errors import InvalidRequest, LimitExceeded, NotFound
from magpie.common.events.control import ApplicationCreated, ApplicationDeleted
from magpie.common.image_types import IMAGE_TYPES
from magpie.gateway.api.schemas import AppCreated, AppIn, AppOut, KeyCreated, KeyOut

MAX_KEYS = 10


def _out(app: Application) -> AppOut:
    return AppOut(app_id=app.id, name=app.name, image_type=app.image_type,
                  schema_version=app.schema_version, created_at=app.created_at)


async def get_app(s: AsyncSession, account_id: int, app_id: str) -> Application:
    """The application if it belongs to `account_id`; another account's id is NotFound."""
    app = await s.get(Application, app_id)
    if app is None or app.account_id != account_id:
        raise NotFound(f"No application {app_id}.")
    return app


def _new_key(app_id: str, label: str = "") -> tuple[AppKey, KeyCreated]:
    secret = new_token()
    row = AppKey(access_key=new_key(), app_id=app_id, secret_hash=hash_token(secret),
                 app_key=new_key(), label=label, created_at=utcnow())
    return row, KeyCreated(access_key=row.access_key, app_key=row.app_key, label=label,
                           created_at=row.created_at, secret_key=secret)


async def create_app(db: async_sessionmaker, account_id: int, body: AppIn) -> AppCreated:
    """Create an application with its first key set."""
    if body.image_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"Unknown image type '{body.image_type}'; choose one of {', '.join(IMAGE_TYPES)}."
        )
    async with db() as s, s.begin():
        app = Application(id=new_app_id(), account_id=account_id, name=body.name,
                          image_type=body.image_type, schema_version=0, created_at=utcnow())
        s.add(app)
        await s.flush()
        key_row, key = _new_key(app.id, "default")
        s.add(key_row)
        add_event(s, ApplicationCreated(app_id=app.id, name=app.name, image_type=app.image_type))
        return AppCreated(**_out(app).model_dump(), access_key=key.access_key,
                          secret_key=key.secret_key, app_key=key.app_key)


async def list_apps(db: async_sessionmaker, account_id: int) -> list[AppOut]:
    """The account's applications, oldest first."""
    async with db() as s:
        rows = await s.scalars(
            select(Application).where(Application.account_id == account_id).order_by(Application.created_at)
        )
        return [_out(a) for a in rows]


async def show_app(db: async_sessionmaker, account_id: int, app_id: str) -> AppOut:
    """One application."""
    async with db() as s:
        return _out(await get_app(s, account_id, app_id))


async def rename_app(db: async_sessionmaker, account_id: int, app_id: str, name: str) -> AppOut:
    """Give an application a new name."""
    async with db() as s, s.begin():
        app = await get_app(s, account_id, app_id)
        app.name = name
        return _out(app)


async def delete_app(db: async_sessionmaker, account_id: int, app_id: str) -> None:
    """Delete an application; its index, images and data go with it (via the event)."""
    async with db() as s, s.begin():
        app = await get_app(s, account_id, app_id)
        await s.delete(app)
        add_event(s, ApplicationDeleted(app_id=app_id))


async def list_keys(db: async_sessionmaker, account_id: int, app_id: str) -> list[KeyOut]:
    """An application's key sets, revoked ones included (marked)."""
    async with db() as s:
        await get_app(s, account_id, app_id)
        rows = await s.scalars(select(AppKey).where(AppKey.app_id == app_id).order_by(AppKey.created_at))
        return [KeyOut.model_validate(k) for k in rows]


async def create_key(db: async_sessionmaker, account_id: int, app_id: str, label: str = "") -> KeyCreated:
    """Add a key set; at most ten live ones per application."""
    async with db() as s, s.begin():
        await get_app(s, account_id, app_id)
        live = await s.scalar(
            select(func.count()).select_from(AppKey).where(AppKey.app_id == app_id, AppKey.revoked_at.is_(None))
        )
        if live >= MAX_KEYS:
            raise LimitExceeded(f"An application has at most {MAX_KEYS} keys; revoke one first.")
        row, created = _new_key(app_id, label)
        s.add(row)
        return created


async def revoke_key(db: async_sessionmaker, account_id: int, app_id: str, access_key: str) -> KeyOut:
    """Revoke a key set at once; revoking twice is harmless."""
    async with db() as s, s.begin():
        await get_app(s, account_id, app_id)
        row = await s.get(AppKey, access_key)
        if row is None or row.app_id != app_id:
            raise NotFound(f"No key {access_key} in application {app_id}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return KeyOut.model_validate(row)
