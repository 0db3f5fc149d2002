"""The gateway's composition root: builds every adapter from settings, in the lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker
from magpie.common.controlplane.outbox import run_relay
from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.ports import Bus, ObjectStore, VectorIndex
from magpie.common.ports.analytics import AnalyticsStore
from magpie.common.settings import BusKind, ObjectStoreKind, Settings
from magpie.gateway.controlplane.members import ensure_initial_owner
from magpie.ingestion import uploads
from magpie.ingestion.service import IngestDeps, replay_pending
from magpie.ingestion.sftp.tables import create_tables as create_sftp_tables
from magpie.ingestion.store import IngestStore, create_tables

log = logging.getLogger(__name__)


def build_bus(settings: Settings) -> Bus:
    """The bus adapter the settings name."""
    if settings.bus is BusKind.KAFKA:
        from magpie.common.bus.kafka import KafkaBus

        return KafkaBus(
            bootstrap=settings.kafka_bootstrap, topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions, max_retries=settings.bus_max_retries,
            retry_backoff_s=settings.bus_retry_backoff_s, client_id="magpie-gateway",
        )
    from magpie.common.bus.inprocess import InProcessBus

    return InProcessBus(
        queue_size=settings.bus_queue_size, workers=settings.bus_workers,
        max_retries=settings.bus_max_retries, retry_backoff_s=settings.bus_retry_backoff_s,
        shutdown_timeout_s=settings.bus_shutdown_timeout_s, spool_dir=settings.data_dir / "bus",
    )


def build_object_store(settings: Settings) -> ObjectStore:
    """The object store adapter the settings name."""
    if settings.object_store is ObjectStoreKind.S3:
        from magpie.common.storage.s3 import S3ObjectStore

        return S3ObjectStore(
            endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(), bucket=settings.s3_bucket,
            secure=settings.s3_secure, region=settings.s3_region,
        )
    from magpie.common.storage.local import LocalObjectStore

    return LocalObjectStore(settings.data_dir / "objects")


@dataclass
class Container:
    """Everything a request handler may need, opened once per process."""

    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker
    bus: Bus
    objects: ObjectStore
    schemas: SchemaProvider
    ingest: IngestDeps
    index: VectorIndex
    analytics: AnalyticsStore
    fetcher: Any = None
    models: Any = None
    search: Any = None  # magpie.search.query.SearchDeps: the query side
    ready: bool = False
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def check(self) -> dict[str, str]:
        """Readiness of each dependency: 'ok' or the error."""
        result: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("select 1"))
            result["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            result["database"] = f"error: {exc.__class__.__name__}"
        try:
            await self.objects.exists("_ready_probe")
            result["object_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            result["object_store"] = f"error: {exc.__class__.__name__}"
        result["bus"] = "ok" if self.ready else "starting"
        return result


def wire_subscribers(c: Container) -> None:
    """Subscribe every service's handlers: standalone mode runs them all in this process."""
    from magpie.analytics import bootstrap as analytics
    from magpie.embedding import bootstrap as embedding
    from magpie.embedding.handlers import EmbedDeps
    from magpie.image_fetch import bootstrap as image_fetch
    from magpie.image_fetch.handlers import FetchDeps
    from magpie.ingestion import bootstrap as ingestion
    from magpie.search import bootstrap as search
    from magpie.search.handlers import IndexDeps

    ingestion.subscribe(c.bus, c.ingest.store)
    image_fetch.subscribe(c.bus, FetchDeps(fetcher=c.fetcher, objects=c.objects, bus=c.bus,
                                           min_side=c.settings.image_min_side))
    embedding.subscribe(c.bus, EmbedDeps(model_for=c.models.for_type, objects=c.objects,
                                         schemas=c.schemas, bus=c.bus))
    search.subscribe(c.bus, IndexDeps(index=c.index, schemas=c.schemas, bus=c.bus))
    analytics.subscribe(c.bus, c.analytics)


async def open_control_plane(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker]:
    """Open the store and create missing tables (also used by the CLI)."""
    engine = make_engine(settings.resolved_database_url)
    await create_schema(engine)
    await create_tables(engine)
    await create_sftp_tables(engine)
    return engine, make_sessionmaker(engine)


@contextlib.asynccontextmanager
async def container(settings: Settings) -> AsyncIterator[Container]:
    """Open every adapter, start the bus and the outbox relay; close all on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine, db = await open_control_plane(settings)
    password = await ensure_initial_owner(
        db, settings.admin_email,
        settings.admin_password.get_secret_value() if settings.admin_password else None,
    )
    if password:
        # Printed once, on the console only: it is not stored anywhere in clear.
        print(f"\n  Magpie initial owner: {settings.admin_email}  password: {password}\n", flush=True)
    from magpie.analytics.bootstrap import build_analytics_store
    from magpie.embedding.bootstrap import Models
    from magpie.image_fetch.bootstrap import build_fetcher
    from magpie.search.bootstrap import build_index
    from magpie.search.query import SearchDeps

    bus = build_bus(settings)
    schemas = SchemaProvider(db)
    c = Container(settings=settings, engine=engine, db=db, bus=bus, objects=build_object_store(settings),
                  schemas=schemas, ingest=IngestDeps(store=IngestStore(db), bus=bus, schemas=schemas),
                  index=build_index(settings), analytics=build_analytics_store(settings),
                  fetcher=build_fetcher(settings), models=Models(settings))
    await c.objects.start()
    await c.analytics.start()
    await c.index.start()
    await c.fetcher.start()
    c.search = SearchDeps(index=c.index, schemas=schemas, models=c.models, fetcher=c.fetcher,
                          objects=c.objects, min_side=settings.image_min_side)
    # Load the default model now, in a thread, so the first insert does not wait for it.
    c._tasks.append(asyncio.create_task(c.models.for_type("general"), name="model-preload"))
    wire_subscribers(c)
    await c.bus.start()
    replayed = await replay_pending(c.ingest)
    if replayed:
        log.info("replayed %d unfinished items from before the last stop", replayed)
    resumed = await uploads.resume(uploads.UploadDeps(ingest=c.ingest, db=db, objects=c.objects,
                                                      work_dir=settings.data_dir / "uploads"))
    if resumed:
        log.info("resumed %d CSV uploads", resumed)
    sftp = None
    if settings.sftp_enabled:
        from magpie.ingestion.sftp.server import start as start_sftp

        sftp = await start_sftp(settings, c.ingest, db)
    c.ready = True
    stop = asyncio.Event()
    c._tasks.append(asyncio.create_task(run_relay(db, c.bus, stop), name="outbox-relay"))
    try:
        yield c
    finally:
        c.ready = False
        if sftp is not None:
            await sftp.stop()
        await uploads.stop()
        stop.set()
        await asyncio.gather(*c._tasks, return_exceptions=True)
        await c.bus.stop()
        await c.analytics.stop()
        await c.models.close()
        await c.fetcher.stop()
        await c.index.stop()
        await c.objects.stop()
        await engine.dispose()
