"""Read an application's schema from the control-plane store (internal, unscoped)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

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


@dataclass
class _Reads:
    """Version checks of one application: the one running, the one callers queue for."""

    running: asyncio.Future[AppSchema] | None = None
    next: asyncio.Future[AppSchema] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class SchemaProvider:
    """Schemas by application, cached per version.

    By default every call checks the version (one small query), so validation never uses a
    stale schema. Concurrent calls share checks: a caller waits for the next check to start
    after it called (never one already running), so the answer is as fresh as its own query
    would have been, and an ingest's many stages cost a couple of queries, not one each.
    Pipeline stages that only need the image type or field types of items already validated
    pass `max_age_s` and skip the query altogether.
    """

    def __init__(self, db: async_sessionmaker) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, AppSchema]] = {}
        self._reads: dict[str, _Reads] = {}
        self.queries = 0  # version checks run (tests, metrics)

    def invalidate(self, app_id: str) -> None:
        """Forget the cached schema of `app_id` (it changed or the app was deleted)."""
        self._cache.pop(app_id, None)

    async def app_ids(self) -> list[str]:
        """Every application's id."""
        async with self.db() as s:
            return list(await s.scalars(select(Application.id).order_by(Application.id)))

    async def get(self, app_id: str, max_age_s: float = 0.0) -> AppSchema:
        """The current schema (or one checked at most `max_age_s` ago); NotFound when the
        application does not exist."""
        hit = self._cache.get(app_id)
        if hit is not None and time.monotonic() - hit[0] < max_age_s:
            return hit[1]
        loop = asyncio.get_running_loop()
        reads = self._reads.setdefault(app_id, _Reads())
        if reads.next is None or reads.next.get_loop() is not loop:
            reads.next = loop.create_future()
            reads.next.add_done_callback(_retrieved)
            task = loop.create_task(self._check_after_running(app_id, reads, reads.next))
            reads.tasks.add(task)
            task.add_done_callback(reads.tasks.discard)
        # Shielded: one caller giving up does not cancel the others' check.
        return await asyncio.shield(reads.next)

    async def _check_after_running(self, app_id: str, reads: _Reads,
                                   mine: asyncio.Future[AppSchema]) -> None:
        running = reads.running
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([running])  # its callers came before ours: it may be too old
        if reads.next is mine:
            reads.next = None  # callers from now on wait for a check that starts later
        reads.running = mine
        try:
            mine.set_result(await self._check(app_id))
        except asyncio.CancelledError:
            mine.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            mine.set_exception(exc)
        finally:
            if reads.running is mine:
                reads.running = None

    async def _check(self, app_id: str) -> AppSchema:
        """One version check (and a fields read when the version changed)."""
        self.queries += 1
        hit = self._cache.get(app_id)
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


def _retrieved(future: asyncio.Future[AppSchema]) -> None:
    # Callers may all have given up: the error is theirs, not an "exception never retrieved".
    if not future.cancelled():
        future.exception()
