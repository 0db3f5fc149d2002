"""The embedded analytics adapter: ClickHouse's engine in-process (chdb), on disk.

chdb is synchronous and holds one embedded server per process, bound to one folder: every
call of the main session runs on one worker thread (which also serialises them), and each
export streams from a session of its own, since a second query on a session ends the stream
it is reading.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from magpie.analytics.store.base import SqlStore
from magpie.analytics.store.chdb_export import one_csv, one_parquet
from magpie.common.errors import Unavailable
from magpie.common.ports.analytics import ExportFormat


class ChdbAnalyticsStore(SqlStore):
    """AnalyticsStore on chdb; data under `path` (one folder per process)."""

    def __init__(self, path: Path, database: str = "magpie", **buffering: Any) -> None:
        super().__init__(database, **buffering)
        self.path = Path(path)
        self._session: Any = None
        self._executor: ThreadPoolExecutor | None = None

    def _connect(self) -> Any:
        from chdb.session import Session  # heavy (the engine): imported only when opened

        try:
            return Session(str(self.path))
        except Exception as exc:  # chdb raises RuntimeError with a terse engine message
            raise Unavailable(
                f"Cannot open the analytics store at {self.path}: {exc}. chdb allows one folder "
                "per process and one process per folder (is `magpie serve` running on it?)."
            ) from exc

    async def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chdb")
        self._session = await self._call(self._connect)

    async def _close(self) -> None:
        if self._session is not None:
            await self._call(self._session.close)
            self._session = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise Unavailable("The analytics store is not open.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _run(self, text: str, params: dict[str, str]) -> bytes:
        return self._session.query(text, "CSV", params=_escaped(params)).bytes()

    async def _command(self, statement: str, params: dict[str, str]) -> None:
        await self._call(self._run, statement, params)

    async def _insert(self, statement: str, body: bytes) -> None:
        # chdb takes no separate body: the JSONEachRow data follows the statement's FORMAT.
        await self._call(self._run, statement + "\n" + body.decode(), {})

    async def _query(self, query: str, params: dict[str, str]) -> bytes:
        return await self._call(self._run, query, params)

    def _export_chunks(self, chunks: AsyncIterator[bytes],
                       fmt: ExportFormat) -> AsyncIterator[bytes]:
        # chdb formats each block on its own (see chdb_export).
        return one_csv(chunks) if fmt == "csv" else one_parquet(chunks)

    async def _stream(self, query: str, params: dict[str, str]) -> AsyncIterator[bytes]:
        session = await asyncio.to_thread(self._connect)
        result = None
        try:
            result = await asyncio.to_thread(session.send_query, query, "CSV", _escaped(params))
            while (chunk := await asyncio.to_thread(result.fetch)) is not None:
                yield chunk.bytes()
        finally:
            # A client that hangs up mid-download lands here too: cancel, then close.
            if result is not None:
                await asyncio.to_thread(result.close)
            await asyncio.to_thread(session.close)


def _escaped(params: dict[str, str]) -> dict[str, str]:
    # chdb reads parameter values in ClickHouse's escaped text form (as the HTTP interface
    # does, where clickhouse-connect escapes them): a raw tab or newline would not parse.
    table = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "'": "\\'"})
    return {k: v.translate(table) for k, v in params.items()}
