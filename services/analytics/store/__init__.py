"""Analytics store adapters (chdb embedded, ClickHouse server) over one SQL module; pick one
with magpie.analytics.bootstrap.build_analytics_store."""
