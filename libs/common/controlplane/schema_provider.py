"""Read an application's schema from the control-plane store (internal, unscoped)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.schema_rules import Field
from magpie.common.controlplane.tables import Application, SchemaField
from magpie.common.errors import NotFound


@dataclass(frozen=True)
class AppSchema:
    """An application's schema at one version."""

    app_id: str
    version: int
    fields: tuple[Field, ...]
    image_type: str = "general"

    def field(self, name: str) -> Field | None:
        """The field called `name`, if any."""
        return next((f for f in self.fields if f.name == name), None)


class SchemaProvider:
    """Schemas by application, cached per version so a hot path costs one small query."""

    def __init__(self, db: async_sessionmaker) -> None:
        self.db = db
        self._cache: dict[str, AppSchema] = {}

    async def get(self, app_id: str) -> AppSchema:
        """The current schema; NotFound when the application does not exist."""
        async with self.db() as s:
            row = (await s.execute(select(Application.schema_version, Application.image_type)
                                   .where(Application.id == app_id))).first()
            if row is None:
                raise NotFound(f"No application {app_id}.")
            version, image_type = row
            cached = self._cache.get(app_id)
            if cached is not None and cached.version == version:
                return cached
            rows = await s.scalars(select(SchemaField).where(SchemaField.app_id == app_id)
                                   .order_by(SchemaField.position))
            fields = tuple(Field(r.name, r.type, r.searchable) for r in rows)  # type: ignore[arg-type]
            schema = AppSchema(app_id, version, fields, image_type)
        self._cache[app_id] = schema
        return schema
