"""The distributed analytics adapter: a ClickHouse server over HTTP (clickhouse-connect).

clickhouse-connect's client is synchronous (its async client needs aiohttp, which Magpie
does not otherwise use): calls run in worker threads. The client is thread-safe without a
session id, so queries may run side by side; the buffer already sends inserts one at a time.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from magpie.analytics.store.base import SqlStore
from magpie.common.errors import Unavailable


class ClickHouseAnalyticsStore(SqlStore):
    """AnalyticsStore on a ClickHouse server, e.g. url = http://user:password@host:8123."""

    def __init__(self, url: str, database: str = "magpie", **buffering: Any) -> None:
        super().__init__(database, **buffering)
        self.url = url
        self._client: Any = None

    def _connect(self) -> Any:
        import clickhouse_connect  # imported only when opened

        try:
            # No session id: concurrent queries on one session would be refused by the server.
            return clickhouse_connect.get_client(dsn=self.url, autogenerate_session_id=False)
        except Exception as exc:
            raise Unavailable(f"Cannot reach ClickHouse at {self.url}: {exc}") from exc

    async def _open(self) -> None:
        self._client = await asyncio.to_thread(self._connect)

    async def _close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    async def _command(self, statement: str, params: dict[str, str]) -> None:
        await asyncio.to_thread(self._client.command, statement, parameters=params or None)

    async def _insert(self, statement: str, body: bytes) -> None:
        # The statement goes in the URL, the JSONEachRow rows in the request body.
        await asyncio.to_thread(self._client.command, statement, data=body)

    async def _query(self, query: str, params: dict[str, str]) -> bytes:
        return await asyncio.to_thread(self._client.raw_query, query, parameters=params or None)

    async def _stream(self, query: str, params: dict[str, str]) -> AsyncIterator[bytes]:
        stream = await asyncio.to_thread(self._client.raw_stream, query, parameters=params or None)
        chunks = iter(stream)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                await asyncio.to_thread(close)
