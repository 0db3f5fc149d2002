"""ingestion's subscriptions (its HTTP side is served by the gateway)."""
from __future__ import annotations

from functools import partial

from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemStatus
from magpie.common.ports import Bus
from magpie.ingestion.handlers import on_application_deleted, on_item_status
from magpie.ingestion.store import IngestStore

GROUP = "ingestion"


def subscribe(bus: Bus, store: IngestStore) -> None:
    """The service's subscriptions."""
    bus.subscribe(ItemStatus, GROUP, partial(on_item_status, store=store))
    bus.subscribe(ApplicationDeleted, GROUP, partial(on_application_deleted, store=store))
