"""Adapter builders every composition root shares: the bus, the object store, the database.

Each service's `bootstrap` picks the ones it needs; nothing here opens a connection until the
caller starts the adapter.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from magpie.common.settings import BusKind, ObjectStoreKind, Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

    from magpie.common.ports import Bus, ObjectStore

log = logging.getLogger(__name__)


def build_bus(settings: Settings, client_id: str = "magpie-gateway") -> Bus:
    """The bus adapter the settings name (not started)."""
    if settings.bus is BusKind.KAFKA:
        from magpie.common.bus.kafka import KafkaBus

        return KafkaBus.from_settings(settings, client_id=client_id)
    from magpie.common.bus.inprocess import InProcessBus

    return InProcessBus(
        queue_size=settings.bus_queue_size, workers=settings.bus_workers,
        max_retries=settings.bus_max_retries, retry_backoff_s=settings.bus_retry_backoff_s,
        shutdown_timeout_s=settings.bus_shutdown_timeout_s, spool_dir=settings.data_dir / "bus",
    )


def build_object_store(settings: Settings) -> ObjectStore:
    """The object store adapter the settings name (not started)."""
    if settings.object_store is ObjectStoreKind.S3:
        from magpie.common.storage.s3 import S3ObjectStore

        return S3ObjectStore(
            endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(), bucket=settings.s3_bucket,
            secure=settings.s3_secure, region=settings.s3_region,
        )
    from magpie.common.storage.local import LocalObjectStore

    return LocalObjectStore(settings.data_dir / "objects")


async def open_database(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker]:
    """The control-plane engine and session factory, with the control-plane tables created."""
    from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    await create_missing(engine, create_schema)
    return engine, make_sessionmaker(engine)


def database_probe(engine: AsyncEngine) -> Callable[[], Awaitable[bool]]:
    """A readiness check that runs `select 1`."""
    from sqlalchemy import text

    async def probe() -> bool:
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        return True

    return probe


def object_store_probe(objects: ObjectStore) -> Callable[[], Awaitable[bool]]:
    """A readiness check that asks the object store for a key."""

    async def probe() -> bool:
        await objects.exists("_ready_probe")
        return True

    return probe


async def create_missing(engine: AsyncEngine, create: Callable[[AsyncEngine], Awaitable[None]],
                         attempts: int = 8) -> None:
    """Run a `create tables if missing` step, retried: in the distributed stack the database
    may still be starting, and services that start together race on PostgreSQL's catalog
    (two concurrent CREATE TABLE IF NOT EXISTS can fail on its unique type names)."""
    for attempt in range(attempts):
        try:
            await create(engine)
            return
        except Exception as exc:  # noqa: BLE001 - retried, then raised
            if attempt == attempts - 1:
                raise
            log.warning("creating tables failed (%s), retrying", exc.__class__.__name__)
            await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
