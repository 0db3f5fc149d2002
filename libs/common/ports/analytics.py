"""The analytics store port: shopper events, served searches and the ingest log, plus the
aggregates the reports are computed from."""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from magpie.common.events.analytics import EventTracked, SearchServed

ExportFormat = Literal["csv", "parquet"]


@dataclass(frozen=True)
class IngestLogRow:
    """One item's outcome at one ingestion stage (insert status and usage statistics)."""

    app_id: str
    trans_id: str
    im_name: str
    stage: str
    outcome: str  # "ok" | "failed"
    error_code: int
    ts: int  # ms since the epoch


@dataclass(frozen=True)
class ReportQuery:
    """What a report covers: one application, UTC days [date_from, date_to], and optionally
    one solution (a search method such as `search`, or a widget/placement name)."""

    app_id: str
    date_from: date
    date_to: date
    solution: str = ""


@dataclass
class Table:
    """Rows of an aggregate, and the same aggregate over all rows (None when not computed)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] | None = None


class AnalyticsStore(Protocol):
    """A columnar store of analytics rows (ClickHouse: embedded chdb or a server).

    Writes are buffered and flushed by size or time; a row delivered twice (same event_id)
    is counted once by every query. Reads flush the buffer first (read-your-writes).
    """

    async def start(self) -> None:
        """Open the engine or client and create missing tables."""

    async def stop(self) -> None:
        """Flush what is buffered and close."""

    async def ping(self) -> bool:
        """Whether the engine answers."""

    async def insert_events(self, events: Sequence[EventTracked]) -> None:
        """Add tracked shopper events."""

    async def insert_searches(self, searches: Sequence[SearchServed]) -> None:
        """Add served searches."""

    async def insert_ingest_log(self, rows: Sequence[IngestLogRow]) -> None:
        """Add per-item ingestion outcomes."""

    async def flush(self) -> None:
        """Write every buffered row now."""

    async def event_funnel(self, q: ReportQuery) -> Table:
        """Per day: views, clicks, add-to-carts, transactions, their distinct query ids, and
        the sum and count of clicked positions."""

    async def search_volume(self, q: ReportQuery) -> Table:
        """Per day: searches served and results returned."""

    async def revenue(self, q: ReportQuery) -> list[dict[str, Any]]:
        """Per currency: transactions and the sum of their values."""

    async def click_histogram(self, q: ReportQuery, max_pos: int = 20) -> list[dict[str, Any]]:
        """Clicks per position 1..max_pos; clicks further down count under max_pos + 1."""

    async def top_products(self, q: ReportQuery, limit: int = 10) -> list[dict[str, Any]]:
        """The most clicked products: pid, clicks, average clicked position."""

    async def insert_api_calls(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Add API call counts keyed by (app_id, ISO date, endpoint)."""

    async def usage(self, app_id: str, date_from: date, date_to: date) -> list[dict[str, Any]]:
        """Per day and kind (search / event / ingest / api): counts by method, action,
        stage:outcome or endpoint."""

    def export_events(
        self, app_id: str, date_from: date, date_to: date, fmt: ExportFormat,
    ) -> AsyncIterator[bytes]:
        """The raw events of the range, deduplicated, as CSV (with header) or Parquet chunks."""

    async def delete_app(self, app_id: str) -> None:
        """Remove every row of an application."""
