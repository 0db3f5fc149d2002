"""What both analytics adapters share: the port's methods over `sql`, and the write buffer.

An adapter supplies only transport: open/close, run a statement, insert a JSONEachRow body,
answer a query's bytes, stream a query's bytes. So the SQL cannot differ between engines.

Writes are buffered and flushed when `flush_rows` rows wait or every `flush_interval_s`:
ClickHouse wants few large inserts (each insert makes a part), while the bus hands over one
event at a time. The interval bounds the delay; `flush_rows` only caps a flush when traffic is
high, and is large on purpose: with 2,000 a busy server made ten parts a second, and parsing,
writing and merging them took ClickHouse 58 ms of CPU per 1,000 events, against 12 ms with
20,000 (bench/analytics.py, 2 shared cores). Buffered rows are kept encoded (bytes), out of
the garbage collector's sight. The cost: a handler returns before its row is written, so a
crash loses at most one interval of rows (a graceful stop flushes). A failed flush keeps its
rows for the next try, up to `max_buffer_rows`, then drops the oldest with an error in the log.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import Any

from magpie.analytics.store import sql
from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.ports.analytics import ExportFormat, IngestLogRow, ReportQuery, Table

log = logging.getLogger(__name__)
_TABLES = {"events": sql.EVENT_COLUMNS, "searches": sql.SEARCH_COLUMNS, "ingest_log": sql.INGEST_COLUMNS,
           "api_calls": sql.API_CALL_COLUMNS}


class SqlStore:
    """The AnalyticsStore port over ClickHouse SQL; subclasses provide the transport."""

    def __init__(self, database: str = "magpie", *, flush_rows: int = 20_000, flush_interval_s: float = 1.0,
                 max_buffer_rows: int = 200_000, insert_chunk_rows: int = 100_000) -> None:
        sql.render("", database)  # fail at construction on a bad name, not at first use
        self.database = database
        self.flush_rows, self.flush_interval_s = flush_rows, flush_interval_s
        self.max_buffer_rows, self.insert_chunk_rows = max_buffer_rows, insert_chunk_rows
        self._buffers: dict[str, list[bytes]] = {t: [] for t in _TABLES}
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task | None = None

    # --- transport (adapters) ----------------------------------------------------------------
    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _command(self, statement: str, params: dict[str, str]) -> None:
        raise NotImplementedError

    async def _insert(self, statement: str, body: bytes) -> None:
        raise NotImplementedError

    async def _query(self, query: str, params: dict[str, str]) -> bytes:
        raise NotImplementedError

    def _stream(self, query: str, params: dict[str, str]) -> AsyncIterator[bytes]:
        raise NotImplementedError

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the engine, create missing tables, start the periodic flush."""
        await self._open()
        for ddl in sql.DDL:
            await self._command(sql.render(ddl, self.database), {})
        self._flusher = asyncio.create_task(self._flush_loop(), name="analytics-flush")

    async def stop(self) -> None:
        """Flush and close."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - closing must go on; the rows are reported lost
            log.exception("analytics: %d buffered rows lost at stop", self.buffered())
        await self._close()

    async def ping(self) -> bool:
        """Whether the engine answers."""
        try:
            await self._query(sql.PING, {})
            return True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            return False

    # --- writes ------------------------------------------------------------------------------
    async def insert_events(self, events: Sequence[EventTracked]) -> None:
        """Buffer tracked events."""
        await self._add("events", [sql.encode_row(sql.event_row(e)) for e in events])

    async def insert_searches(self, searches: Sequence[SearchServed]) -> None:
        """Buffer served searches."""
        await self._add("searches", [sql.encode_row(sql.search_row(s)) for s in searches])

    async def insert_ingest_log(self, rows: Sequence[IngestLogRow]) -> None:
        """Buffer item outcomes."""
        await self._add("ingest_log", [sql.encode_row(sql.ingest_row(r)) for r in rows])

    async def insert_api_calls(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Buffer API call counts keyed by (app_id, ISO date, endpoint)."""
        await self._add("api_calls", [sql.encode_row(sql.api_call_row(a, d, e, n))
                                      for (a, d, e), n in counts.items()])

    def buffered(self) -> int:
        """Rows waiting to be written."""
        return sum(len(b) for b in self._buffers.values())

    async def _add(self, table: str, rows: list[bytes]) -> None:
        self._buffers[table].extend(rows)
        if self.buffered() >= self.flush_rows:
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered row now, one insert per table (chunked)."""
        async with self._flush_lock:
            for table, columns in _TABLES.items():
                rows, self._buffers[table] = self._buffers[table], []
                statement = sql.insert(table, columns, self.database)
                for start in range(0, len(rows), self.insert_chunk_rows):
                    try:
                        await self._insert(statement, sql.encode(rows[start:start + self.insert_chunk_rows]))
                    except BaseException:
                        self._keep(table, rows[start:])
                        raise

    def _keep(self, table: str, rows: list[bytes]) -> None:
        kept = rows + self._buffers[table]
        overflow = len(kept) - self.max_buffer_rows
        if overflow > 0:
            log.error("analytics: buffer full, dropping the %d oldest %s rows", overflow, table)
            kept = kept[overflow:]
        self._buffers[table] = kept

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - rows are kept; the next tick retries
                log.warning("analytics: flush failed (%s), %d rows kept for retry", exc, self.buffered())

    # --- reads -------------------------------------------------------------------------------
    async def _select(self, template: str, params: dict[str, str]) -> dict[str, Any]:
        await self.flush()
        return json.loads(await self._query(sql.select(template, self.database), params))

    async def _table(self, template: str, q: ReportQuery, **extra: Any) -> Table:
        rows = (await self._select(template, _params(q, **extra))).get("data", [])
        # A ROLLUP(date) query ends with its total row, the one whose date is null.
        totals = [r for r in rows if "date" in r and r["date"] is None]
        return Table(rows=[r for r in rows if not ("date" in r and r["date"] is None)],
                     totals=totals[0] if totals else None)

    async def event_funnel(self, q: ReportQuery) -> Table:
        """Daily funnel counts (see sql.EVENT_FUNNEL)."""
        return await self._table(sql.EVENT_FUNNEL, q)

    async def search_volume(self, q: ReportQuery) -> Table:
        """Daily searches and results served."""
        return await self._table(sql.SEARCH_VOLUME, q)

    async def revenue(self, q: ReportQuery) -> list[dict[str, Any]]:
        """Transactions and revenue per currency."""
        return (await self._table(sql.REVENUE, q)).rows

    async def click_histogram(self, q: ReportQuery, max_pos: int = 20) -> list[dict[str, Any]]:
        """Clicks per position; the last bucket gathers positions beyond max_pos."""
        return (await self._table(sql.CLICK_HISTOGRAM, q, max_pos=max_pos)).rows

    async def top_products(self, q: ReportQuery, limit: int = 10) -> list[dict[str, Any]]:
        """The most clicked products."""
        return (await self._table(sql.TOP_PRODUCTS, q, limit=limit)).rows

    async def usage(self, app_id: str, date_from: date, date_to: date) -> list[dict[str, Any]]:
        """Daily counts of searches by method, events by action, ingest outcomes by stage."""
        return (await self._table(sql.USAGE, ReportQuery(app_id, date_from, date_to))).rows

    async def export_events(self, app_id: str, date_from: date, date_to: date,
                            fmt: ExportFormat) -> AsyncIterator[bytes]:
        """Stream the raw (deduplicated) events of the range as CSV or Parquet."""
        await self.flush()
        query = sql.export(self.database, fmt)
        streamed = self._stream(query, _params(ReportQuery(app_id, date_from, date_to)))
        async for chunk in self._export_chunks(streamed, fmt):
            yield chunk

    def _export_chunks(self, chunks: AsyncIterator[bytes],
                       fmt: ExportFormat) -> AsyncIterator[bytes]:
        """The engine's streamed export as one document (an adapter's hook; as is by default)."""
        return chunks

    async def delete_app(self, app_id: str) -> None:
        """Drop an application's rows (a mutation: ClickHouse rewrites the parts in the background)."""
        await self.flush()
        for statement in sql.DELETE_APP:
            await self._command(sql.render(statement, self.database), {"app_id": app_id})


def _params(q: ReportQuery, **extra: Any) -> dict[str, str]:
    # Parameters travel as text (ClickHouse parses them by the placeholder's type).
    base = {"app_id": q.app_id, "date_from": q.date_from.isoformat(), "date_to": q.date_to.isoformat(),
            "solution": q.solution}
    return base | {k: str(v) for k, v in extra.items()}
