"""search's composition root: the vector index from settings, and its subscriptions."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from magpie.common.events.control import ApplicationDeleted, SchemaChanged
from magpie.common.events.ingest import ItemEmbedded
from magpie.common.ports import Bus, VectorIndex
from magpie.common.service_runtime import Service
from magpie.common.settings import IndexKind, Settings
from magpie.search.handlers import IndexDeps, on_application_deleted, on_item_embedded, on_schema_changed

GROUP = "search"


def build_index(settings: Settings) -> VectorIndex:
    """qdrant-edge under the data dir (standalone) or a Qdrant server by URL."""
    if settings.index is IndexKind.QDRANT:
        from magpie.search.index.qdrant_server import QdrantServerIndex

        return QdrantServerIndex(url=settings.qdrant_url)
    from magpie.search.index.edge import EdgeIndex

    return EdgeIndex(settings.data_dir / "index")


def subscribe(bus: Bus, deps: IndexDeps) -> None:
    """The indexing side's subscriptions."""
    bus.subscribe(ItemEmbedded, GROUP, partial(on_item_embedded, deps=deps))
    bus.subscribe(SchemaChanged, GROUP, partial(on_schema_changed, deps=deps))
    bus.subscribe(ApplicationDeleted, GROUP, partial(on_application_deleted, deps=deps))


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The search service alone (`magpie run search`): it keeps the index from the bus and
    answers the gateways' index reads (magpie.search.http_api). On qdrant-edge it is the one
    owner of the index folder; on a Qdrant server its replicas are stateless."""
    from magpie.common.adapters import build_bus, database_probe, open_database
    from magpie.common.controlplane.schema_provider import SchemaProvider

    engine, db = await open_database(settings)
    index = build_index(settings)
    bus = build_bus(settings, client_id="magpie-search")
    try:
        await index.start()
        subscribe(bus, IndexDeps(index=index, schemas=SchemaProvider(db), bus=bus))
        await bus.start()
        yield Service("search", bus=bus, index=index, checks={"database": database_probe(engine)})
    finally:
        await bus.stop()
        await index.stop()
        await engine.dispose()
