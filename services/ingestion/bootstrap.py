"""ingestion's composition roots: its subscriptions (its HTTP side is served by the
gateway), and the ingestion and SFTP services alone for the distributed mode."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemStatus
from magpie.common.ports import Bus
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings
from magpie.ingestion.handlers import on_application_deleted, on_item_status
from magpie.ingestion.store import IngestStore

GROUP = "ingestion"
log = logging.getLogger(__name__)


def subscribe(bus: Bus, store: IngestStore) -> None:
    """The service's subscriptions."""
    bus.subscribe(ItemStatus, GROUP, partial(on_item_status, store=store))
    bus.subscribe(ApplicationDeleted, GROUP, partial(on_application_deleted, store=store))


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The ingestion service alone (`magpie run ingestion`): item outcomes into the ingest
    log, and every item still pending from before the last stop published again."""
    from magpie.common.adapters import build_bus, create_missing, database_probe, open_database
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.ingestion.service import IngestDeps, replay_pending
    from magpie.ingestion.store import create_tables

    engine, db = await open_database(settings)
    await create_missing(engine, create_tables)
    bus = build_bus(settings, client_id="magpie-ingestion")
    store = IngestStore(db)
    subscribe(bus, store)
    try:
        await bus.start()
        replayed = await replay_pending(IngestDeps(store=store, bus=bus, schemas=SchemaProvider(db)))
        if replayed:
            log.info("replayed %d unfinished items from before the last stop", replayed)
        yield Service("ingestion", bus=bus, checks={"database": database_probe(engine)})
    finally:
        await bus.stop()
        await engine.dispose()


@asynccontextmanager
async def sftp_service(settings: Settings) -> AsyncIterator[Service]:
    """The SFTP datafeed server alone (`magpie run sftp`): it publishes feeds' items; their
    outcomes are recorded by the ingestion service."""
    from magpie.common.adapters import build_bus, create_missing, database_probe, open_database
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.ingestion.service import IngestDeps
    from magpie.ingestion.sftp.server import start
    from magpie.ingestion.sftp.tables import create_tables as create_sftp_tables
    from magpie.ingestion.store import create_tables

    engine, db = await open_database(settings)
    await create_missing(engine, create_tables)
    await create_missing(engine, create_sftp_tables)
    bus = build_bus(settings, client_id="magpie-sftp")
    server = None
    try:
        await bus.start()
        server = await start(settings, IngestDeps(store=IngestStore(db), bus=bus,
                                                  schemas=SchemaProvider(db)), db)
        yield Service("sftp", bus=bus, checks={"database": database_probe(engine)})
    finally:
        if server is not None:
            await server.stop()
        await bus.stop()
        await engine.dispose()
