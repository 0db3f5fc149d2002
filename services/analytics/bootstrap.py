"""analytics' composition root: the store from settings, and its subscriptions."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from magpie.analytics.handlers import (
    on_application_deleted,
    on_event_tracked,
    on_item_status,
    on_search_served,
)
from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemStatus
from magpie.common.ports import Bus
from magpie.common.ports.analytics import AnalyticsStore
from magpie.common.service_runtime import Service
from magpie.common.settings import AnalyticsKind, Settings

GROUP = "analytics"


def build_analytics_store(settings: Settings) -> AnalyticsStore:
    """chdb under the data dir (standalone) or a ClickHouse server by URL; not yet started."""
    if settings.analytics is AnalyticsKind.CLICKHOUSE:
        from magpie.analytics.store.clickhouse_store import ClickHouseAnalyticsStore

        return ClickHouseAnalyticsStore(settings.clickhouse_url)
    from magpie.analytics.store.chdb_store import ChdbAnalyticsStore

    return ChdbAnalyticsStore(settings.data_dir / "analytics")


def subscribe(bus: Bus, store: AnalyticsStore) -> None:
    """The analytics side's subscriptions."""
    bus.subscribe(EventTracked, GROUP, partial(on_event_tracked, store=store))
    bus.subscribe(SearchServed, GROUP, partial(on_search_served, store=store))
    bus.subscribe(ItemStatus, GROUP, partial(on_item_status, store=store))
    bus.subscribe(ApplicationDeleted, GROUP, partial(on_application_deleted, store=store))


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The analytics service alone (`magpie run analytics`): it owns the store (chdb allows
    one process) and answers the gateways' report reads (magpie.analytics.http_api)."""
    from magpie.common.adapters import build_bus

    store = build_analytics_store(settings)
    bus = build_bus(settings, client_id="magpie-analytics")
    await store.start()
    subscribe(bus, store)
    try:
        await bus.start()
        yield Service("analytics", bus=bus, analytics=store, checks={"store": store.ping})
    finally:
        await bus.stop()
        await store.stop()  # flushes what the last records buffered
