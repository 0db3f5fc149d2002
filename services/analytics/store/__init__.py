"""Analytics store adapters (chdb embedded, ClickHouse server) over one SQL module."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magpie.common.ports.analytics import AnalyticsStore
    from magpie.common.settings import Settings


def build_analytics_store(settings: Settings) -> AnalyticsStore:
    """The analytics adapter the settings name (not yet started)."""
    from magpie.common.settings import AnalyticsKind

    if settings.analytics is AnalyticsKind.CLICKHOUSE:
        from magpie.analytics.store.clickhouse_store import ClickHouseAnalyticsStore

        return ClickHouseAnalyticsStore(settings.clickhouse_url)
    from magpie.analytics.store.chdb_store import ChdbAnalyticsStore

    return ChdbAnalyticsStore(settings.data_dir / "analytics")
