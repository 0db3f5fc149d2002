"""Read an application's schema from the control-plane store (internal, unscoped)."""
from __future__ import annotations

import time
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
    """Schemas by application, cached per version.

    By default every call checks the version (one small query), so validation never uses a
    stale schema. Pipeline stages that only need the image type or field types of items
    already validated pass `max_age_s` and skip that query during an ingest.
    """

    def __init__(self, db: async_sessionmaker) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, AppSchema]] = {}

    def invalidate(self, app_id: str) -> None:
        """Forget the cached schema of `app_id` (it changed or the app was deleted)."""
        self._cache.pop(app_id, None)

    async def get(self, app_id: str, max_age_s: float = 0.0) -> AppSchema:
        """The current schema (or one checked at most `max_age_s` ago); NotFound when the
        application does not exist."""
        hit = self._cache.get(app_id)
        if hit is not None and time.monotonic() - hit[0] < max_age_s:
            return hit[1]
        async with self.db() as s:
            row = (await s.execute(select(Application.schema_version, Application.image_type)
                                   .where(Application.id == app_id))).first()
            if row is None:
                raise NotFound(f"No application {app_id}.")
            version, image_type = row
            if hit is not None and hit[1].version == version and hit[1].image_type == image_type:
                self._cache[app_id] = (time.monotonic(), hit[1])
                return hit[1]
            rows = await s.scalars(select(SchemaField).where(SchemaField.app_id == app_id)
                                   .order_by(SchemaField.position))
            fields = tuple(Field(r.name, r.type, r.searchable) for r in rows)  # type: ignore[arg-type]
            schema = AppSchema(app_id, version, fields, image_type)
        self._cache[app_id] = (time.monotonic(), schema)
        return schema
