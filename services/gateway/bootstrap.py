"""The gateway's composition root: builds every adapter from settings, in the lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from magpie.common.adapters import build_bus, build_object_store, create_missing, open_database
from magpie.common.controlplane.outbox import run_relay
from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.ports import Bus, ObjectStore, VectorIndex
from magpie.common.ports.analytics import AnalyticsStore
from magpie.common.settings import Settings
from magpie.gateway.controlplane.members import ensure_initial_owner
from magpie.ingestion import uploads
from magpie.ingestion.service import IngestDeps, replay_pending
from magpie.ingestion.sftp.tables import create_tables as create_sftp_tables
from magpie.ingestion.store import IngestStore, create_tables

log = logging.getLogger(__name__)
__all__ = ["Container", "build_bus", "build_object_store", "container", "open_control_plane"]


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
    # Standalone: image-fetch hands its decoded images to embedding, and both run their pixel
    # work and the model on one low-priority pool (magpie.common.pipeline).
    images: Any = None
    ingest_pool: Any = None
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
        if self.settings.distributed:  # the services the query path and reports depend on
            ping = getattr(self.index, "ping", None)
            result["search"] = "ok" if ping is not None and await ping() else "unavailable"
            result["analytics"] = "ok" if await self.analytics.ping() else "unavailable"
        return result


def auto_projection(c: Container, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """The task that fits each application's projection when its catalog is ready."""
    from magpie.common.pipeline import low_priority_executor
    from magpie.embedding import auto_projection as auto

    s = c.settings
    # One idle-priority thread: a fit takes the CPU that searches and ingest leave.
    fits = low_priority_executor(1, "projection-fit", idle=s.ingest_idle)
    deps = auto.AutoProjectionDeps(index=c.index, objects=c.objects, models=c.models,
                                   schemas=c.schemas, app_ids=c.schemas.app_ids, executor=fits,
                                   min_items=s.auto_projection_min_items)

    async def run() -> None:
        try:
            await auto.run(deps, stop, s.auto_projection_check_s)
        finally:
            fits.shutdown(wait=False, cancel_futures=True)

    return run()


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
                                           min_side=c.settings.image_min_side, images=c.images,
                                           executor=c.ingest_pool))
    embedding.subscribe(c.bus, EmbedDeps(model_for=c.models.for_type, objects=c.objects,
                                         schemas=c.schemas, bus=c.bus, images=c.images,
                                         executor=c.ingest_pool, app_model=c.models.for_app))
    search.subscribe(c.bus, IndexDeps(index=c.index, schemas=c.schemas, bus=c.bus,
                                      reproject=c.models.reprojected))
    analytics.subscribe(c.bus, c.analytics)


def query_side(settings: Settings) -> tuple[VectorIndex, AnalyticsStore]:
    """The index and analytics store the gateway reads: its own engines when standalone; in
    distributed mode the search service's index over HTTP (qdrant-edge has one owner, and a
    Qdrant server's collections are the search service's to manage) and the analytics
    service over HTTP (chdb has one owner), or ClickHouse directly when told so.

    Upload search embeds its query image in the gateway either way: the image is already
    here (up to 10 MB, decoded and stored under its im_id), only a 2,024-float vector then
    crosses the network, search replicas stay small and fast, and the CPU it costs scales
    with the gateways that receive the uploads.
    """
    from magpie.analytics.bootstrap import build_analytics_store
    from magpie.search.bootstrap import build_index

    if not settings.distributed:
        return build_index(settings), build_analytics_store(settings)
    from magpie.gateway.analytics_client import AnalyticsServiceClient
    from magpie.gateway.search_client import SearchServiceIndex

    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    index = SearchServiceIndex(settings.search_url, timeout_s=settings.internal_timeout_s, token=token)
    if settings.gateway_analytics == "direct":
        return index, build_analytics_store(settings)
    return index, AnalyticsServiceClient(settings.analytics_url, timeout_s=settings.internal_timeout_s,
                                         token=token)


async def open_control_plane(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker]:
    """Open the store and create missing tables (also used by the CLI)."""
    engine, db = await open_database(settings)
    await create_missing(engine, create_tables)
    await create_missing(engine, create_sftp_tables)
    return engine, db


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
    from magpie.common.pipeline import DecodedImages, ingest_pool
    from magpie.embedding.bootstrap import Models
    from magpie.image_fetch.bootstrap import build_fetcher
    from magpie.search.query import SearchDeps

    bus = build_bus(settings, client_id="magpie-gateway")
    schemas = SchemaProvider(db)
    index, analytics = query_side(settings)
    pool = ingest_pool(idle=settings.ingest_idle)
    objects = build_object_store(settings)
    c = Container(settings=settings, engine=engine, db=db, bus=bus, objects=objects,
                  schemas=schemas, ingest=IngestDeps(store=IngestStore(db), bus=bus, schemas=schemas),
                  index=index, analytics=analytics,
                  fetcher=build_fetcher(settings), models=Models(settings, executor=pool, objects=objects),
                  images=None if settings.distributed else DecodedImages(), ingest_pool=pool)
    await c.objects.start()
    await c.analytics.start()
    await c.index.start()
    await c.fetcher.start()
    # Upload search embeds here, in the gateway, in both modes: see query_side.
    c.search = SearchDeps(index=c.index, schemas=schemas, models=c.models, fetcher=c.fetcher,
                          objects=c.objects, min_side=settings.image_min_side,
                          views=settings.upload_search_views)
    # Load the default model now, in a thread, so the first insert does not wait for it.
    c._tasks.append(asyncio.create_task(c.models.for_type("general"), name="model-preload"))
    if not settings.distributed:
        wire_subscribers(c)
    await c.bus.start()
    if not settings.distributed:  # distributed: the ingestion service replays on its start
        replayed = await replay_pending(c.ingest)
        if replayed:
            log.info("replayed %d unfinished items from before the last stop", replayed)
    resumed = await uploads.resume(uploads.UploadDeps(ingest=c.ingest, db=db, objects=c.objects,
                                                      work_dir=settings.data_dir / "uploads"))
    if resumed:
        log.info("resumed %d CSV uploads", resumed)
    sftp = None
    if settings.sftp_enabled and not settings.distributed:  # distributed: `magpie run sftp`
        from magpie.ingestion.sftp.server import start as start_sftp

        sftp = await start_sftp(settings, c.ingest, db)
    c.ready = True
    stop = asyncio.Event()
    c._tasks.append(asyncio.create_task(run_relay(db, c.bus, stop), name="outbox-relay"))
    if settings.auto_projection and not settings.distributed:
        if hasattr(c.index, "rebuild"):
            c._tasks.append(asyncio.create_task(auto_projection(c, stop), name="auto-projection"))
        else:  # the Qdrant server adapter cannot move an index over online (yet)
            log.info("auto projection is off: MAGPIE_INDEX=%s cannot rebuild an index online; "
                     "use `magpie projection fit`", settings.index)
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
        pool.shutdown(wait=False)
        await c.fetcher.stop()
        await c.index.stop()
        await c.objects.stop()
        await engine.dispose()
