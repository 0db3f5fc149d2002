"""An application's metadata schema: read, replace, and edit one field at a time."""
from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from magpie.common.controlplane.outbox import add_event
from magpie.common.controlplane.schema_rules import (
    RECOMMENDED_FIELDS,
    Field,
    removed_fields,
    validate_schema,
)
from magpie.common.controlplane.tables import Application, SchemaField
from magpie.common.errors import NotFound, SchemaError
from magpie.common.events.control import FieldSpec, SchemaChanged
from magpie.gateway.api.schemas import FieldIn, FieldOut, FieldPatch, SchemaOut
from magpie.gateway.controlplane.apps import get_app


def _fields(app: Application) -> list[Field]:
    return [Field(f.name, f.type, f.searchable) for f in app.fields]  # type: ignore[arg-type]


def _out(app: Application, fields: list[Field]) -> SchemaOut:
    return SchemaOut(app_id=app.id, version=app.schema_version,
                     fields=[FieldOut(name=f.name, type=f.type, searchable=f.searchable) for f in fields])


def preset() -> list[FieldOut]:
    """The seed's recommended fields."""
    return [FieldOut(name=f.name, type=f.type, searchable=f.searchable) for f in RECOMMENDED_FIELDS]


async def _load(s: AsyncSession, account_id: int, app_id: str) -> Application:
    app = await get_app(s, account_id, app_id)
    await s.refresh(app, ["fields"])
    return app


async def get_schema(db: async_sessionmaker, account_id: int, app_id: str) -> SchemaOut:
    """The application's current schema."""
    async with db() as s:
        app = await _load(s, account_id, app_id)
        return _out(app, _fields(app))


async def set_schema(db: async_sessionmaker, account_id: int, app_id: str, fields: list[FieldIn]) -> SchemaOut:
    """Replace the schema atomically; on any rule violation nothing changes."""
    new = validate_schema(Field(f.name, f.type, f.searchable) for f in fields)  # type: ignore[arg-type]
    async with db() as s, s.begin():
        app = await _load(s, account_id, app_id)
        old = _fields(app)
        if old == new:
            return _out(app, new)
        await s.execute(delete(SchemaField).where(SchemaField.app_id == app_id))
        for i, f in enumerate(new):
            s.add(SchemaField(app_id=app_id, position=i, name=f.name, type=f.type, searchable=f.searchable))
        app.schema_version += 1
        add_event(s, SchemaChanged(
            app_id=app_id, schema_version=app.schema_version,
            fields=[FieldSpec(name=f.name, type=f.type, searchable=f.searchable) for f in new],
            removed=removed_fields(old, new),
        ))
        return _out(app, new)


async def add_field(db: async_sessionmaker, account_id: int, app_id: str, field: FieldIn) -> SchemaOut:
    """Append one field."""
    current = await get_schema(db, account_id, app_id)
    if any(f.name == field.name for f in current.fields):
        raise SchemaError(f"Field '{field.name}' already exists.", field=field.name)
    return await set_schema(db, account_id, app_id, [*_as_in(current), field])


async def update_field(db: async_sessionmaker, account_id: int, app_id: str, name: str,
                       patch: FieldPatch) -> SchemaOut:
    """Change one field's type or searchable flag (a type change drops its data)."""
    current = await get_schema(db, account_id, app_id)
    fields = _as_in(current)
    for f in fields:
        if f.name == name:
            f.type = patch.type if patch.type is not None else f.type
            f.searchable = patch.searchable if patch.searchable is not None else f.searchable
            return await set_schema(db, account_id, app_id, fields)
    raise NotFound(f"No field '{name}' in the schema.")


async def remove_field(db: async_sessionmaker, account_id: int, app_id: str, name: str) -> SchemaOut:
    """Remove one field and, with it, its data."""
    current = await get_schema(db, account_id, app_id)
    fields = [f for f in _as_in(current) if f.name != name]
    if len(fields) == len(current.fields):
        raise NotFound(f"No field '{name}' in the schema.")
    return await set_schema(db, account_id, app_id, fields)


def _as_in(schema: SchemaOut) -> list[FieldIn]:
    return [FieldIn(name=f.name, type=f.type, searchable=f.searchable) for f in schema.fields]
