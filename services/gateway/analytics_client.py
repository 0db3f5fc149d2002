"""The AnalyticsStore port over HTTP: the distributed gateway's view of the analytics service.

Reads (report aggregates, usage, exports) and the gateway's API-call counts go to the
analytics service's internal API (magpie.analytics.http_api); tracked events, served searches
and ingest outcomes reach the store over the bus, never through here.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import Any

import httpx

from magpie.common.errors import Unavailable
from magpie.common.internal_client import InternalClient
from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.ports.analytics import ExportFormat, IngestLogRow, ReportQuery, Table

PREFIX = "/internal/v1/analytics"


class AnalyticsServiceClient(InternalClient):
    """Analytics store reads answered by the analytics service."""

    service = "analytics"

    # --- what the gateway reads ---------------------------------------------------------
    async def event_funnel(self, q: ReportQuery) -> Table:
        """Per-day funnel counts."""
        return await self._table("event_funnel", q)

    async def search_volume(self, q: ReportQuery) -> Table:
        """Per-day searches and results."""
        return await self._table("search_volume", q)

    async def revenue(self, q: ReportQuery) -> list[dict[str, Any]]:
        """Revenue per currency."""
        return (await self._aggregate("revenue", q))["rows"]

    async def click_histogram(self, q: ReportQuery, max_pos: int = 20) -> list[dict[str, Any]]:
        """Clicks per position."""
        return (await self._aggregate("click_histogram", q, max_pos=max_pos))["rows"]

    async def top_products(self, q: ReportQuery, limit: int = 10) -> list[dict[str, Any]]:
        """The most clicked products."""
        return (await self._aggregate("top_products", q, limit=limit))["rows"]

    async def usage(self, app_id: str, date_from: date, date_to: date) -> list[dict[str, Any]]:
        """Usage rows per day and kind."""
        body = {"app_id": app_id, "date_from": date_from.isoformat(), "date_to": date_to.isoformat()}
        return (await self._post("/usage", body))["rows"]

    async def insert_api_calls(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Send API call counts to be summed."""
        await self._post("/api_calls", {"counts": [[a, d, e, n] for (a, d, e), n in counts.items()]})

    async def flush(self) -> None:
        """Ask the service to write what it buffers."""
        await self._post("/flush", {})

    async def export_events(self, app_id: str, date_from: date, date_to: date,
                            fmt: ExportFormat) -> AsyncIterator[bytes]:
        """The raw events, streamed from the service."""
        params = {"app_id": app_id, "date_from": date_from.isoformat(),
                  "date_to": date_to.isoformat(), "fmt": fmt}
        try:
            async with self._http().stream("GET", f"{PREFIX}/export", params=params) as response:
                if response.status_code != 200:
                    raise Unavailable(f"analytics service answered {response.status_code}")
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.HTTPError as exc:
            raise Unavailable(f"analytics service unreachable: {exc.__class__.__name__}") from exc

    # --- writes travel on the bus -------------------------------------------------------
    async def insert_events(self, events: Sequence[EventTracked]) -> None:
        """Not here: tracked events go on the bus."""
        raise RuntimeError("tracked events reach analytics over the bus")

    async def insert_searches(self, searches: Sequence[SearchServed]) -> None:
        """Not here: served searches go on the bus."""
        raise RuntimeError("served searches reach analytics over the bus")

    async def insert_ingest_log(self, rows: Sequence[IngestLogRow]) -> None:
        """Not here: item outcomes go on the bus."""
        raise RuntimeError("item outcomes reach analytics over the bus")

    async def delete_app(self, app_id: str) -> None:
        """Not here: application.deleted goes on the bus."""
        raise RuntimeError("application deletions reach analytics over the bus")

    # --- transport ----------------------------------------------------------------------
    async def _table(self, name: str, q: ReportQuery) -> Table:
        body = await self._aggregate(name, q)
        return Table(rows=body["rows"], totals=body.get("totals"))

    async def _aggregate(self, name: str, q: ReportQuery, **extra: int) -> dict[str, Any]:
        body = {"app_id": q.app_id, "date_from": q.date_from.isoformat(),
                "date_to": q.date_to.isoformat(), "solution": q.solution, **extra}
        return await self._post(f"/aggregate/{name}", body)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http().post(PREFIX + path, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"analytics service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code != 200:
            raise Unavailable(f"analytics service answered {response.status_code}: {response.text[:200]}")
        return response.json()
