"""analytics handlers: plain async functions of (event, store).

Each hands its row to the store's write buffer, which inserts in batches (by size, or every
second); see magpie.analytics.store.base for what that trades. Re-deliveries are harmless:
rows carry the event's id and every query reads deduplicated rows.
"""
from __future__ import annotations

from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemStatus
from magpie.common.ports.analytics import AnalyticsStore, IngestLogRow


async def on_event_tracked(event: EventTracked, store: AnalyticsStore) -> None:
    """Record a shopper event."""
    await store.insert_events([event])


async def on_search_served(event: SearchServed, store: AnalyticsStore) -> None:
    """Record a served search."""
    await store.insert_searches([event])


async def on_item_status(event: ItemStatus, store: AnalyticsStore) -> None:
    """Record an item's outcome at a stage (usage statistics: items ingested, failures)."""
    await store.insert_ingest_log([IngestLogRow(
        app_id=event.app_id, trans_id=str(event.trans_id), im_name=event.im_name, stage=event.stage,
        outcome="ok" if event.ok else "failed", error_code=event.error_code or 0,
        ts=int(event.occurred_at.timestamp() * 1000),
    )])


async def on_application_deleted(event: ApplicationDeleted, store: AnalyticsStore) -> None:
    """Drop a deleted application's analytics (idempotent)."""
    await store.delete_app(event.app_id)
