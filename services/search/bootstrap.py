"""search's composition root: the vector index from settings, and its subscriptions."""
from __future__ import annotations

from functools import partial

from magpie.common.events.control import ApplicationDeleted, SchemaChanged
from magpie.common.events.ingest import ItemEmbedded
from magpie.common.ports import Bus, VectorIndex
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
