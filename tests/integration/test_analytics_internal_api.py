"""The analytics service's internal API against the real engine (chdb): a report, usage and
an export asked through AnalyticsServiceClient → HTTP → magpie.analytics.http_api equal what
the store answers directly, and the gateway's API-call counts land in the store.

In-process (httpx's ASGI transport): chdb allows one folder per process, so the store and the
API share this one; tests/integration/test_distributed.py runs it between processes.
"""
from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from magpie.analytics import http_api, reports
from magpie.analytics.store.chdb_store import ChdbAnalyticsStore
from magpie.common.ports.analytics import ReportQuery
from magpie.common.service_http import service_app
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings
from magpie.gateway.analytics_client import AnalyticsServiceClient
from tests.integration.test_analytics_store import JUNE, _scenario

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path):
    s = ChdbAnalyticsStore(tmp_path / "analytics", database="t_internal")
    await s.start()
    yield s
    await s.stop()


async def test_reports_usage_and_exports_over_http_equal_the_store(store):
    searches, events = _scenario()
    await store.insert_searches(searches)
    await store.insert_events(events)
    app = service_app("analytics", Settings(_env_file=None), lambda s: None, [http_api.router])  # type: ignore[arg-type]
    app.state.service = Service("analytics", analytics=store, ready=True)  # no lifespan in-process
    client = AnalyticsServiceClient("http://analytics", transport=httpx.ASGITransport(app=app))
    await client.start()
    try:
        for solution in ("", "more-like-this"):
            q = ReportQuery("shop", *JUNE, solution)
            assert await reports.report(client, q, top=5) == await reports.report(store, q, top=5)
        assert (await reports.report(client, ReportQuery("shop", *JUNE)))["totals"]["clicks"] == 4

        today = datetime.now(UTC).date()
        await client.insert_api_calls({("shop", today.isoformat(), "search"): 3})
        await client.flush()
        usage = await reports.usage(client, "shop", JUNE[0], today)
        assert usage == await reports.usage(store, "shop", JUNE[0], today)
        assert usage["totals"]["api_calls"] == {"search": 3}

        exported = b"".join([c async for c in client.export_events("shop", *JUNE, "csv")])
        direct = b"".join([c async for c in store.export_events("shop", *JUNE, "csv")])
        assert exported == direct and exported.count(b"\n") == 1 + 8
        assert await client.ping() is True
    finally:
        await client.stop()
