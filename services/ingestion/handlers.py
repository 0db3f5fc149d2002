"""Ingestion handlers: plain async functions of (event, deps)."""
from __future__ import annotations

from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemStatus
from magpie.ingestion.store import IngestStore


async def on_item_status(event: ItemStatus, store: IngestStore) -> None:
    """Record an item's final outcome in its transaction (idempotent)."""
    await store.record(event)


async def on_application_deleted(event: ApplicationDeleted, store: IngestStore) -> None:
    """Forget a deleted application's transactions and items."""
    await store.drop_app(event.app_id)
