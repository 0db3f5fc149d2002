"""A small cache for the search hot path: values are re-read in the background once stale.

A search must not wait for the control-plane database: during an ingest its connections are
all busy with status writes, and a key or schema lookup queued behind them stalled searches
for up to 1.7 s (bench/search.py). So a stale entry is served while one background task
re-reads it; only a key never seen (or evicted) waits for the database.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
V = TypeVar("V")


class RefreshingCache(Generic[V]):
    """Values by key, re-read in the background when older than `ttl_s`."""
    # A re-read raising one of `evict_on` drops the entry; other failures keep the stale value.

    def __init__(self, ttl_s: float, *, evict_on: tuple[type[BaseException], ...] = (),
                 max_entries: int = 10_000) -> None:
        self.ttl_s, self.evict_on, self.max_entries = ttl_s, evict_on, max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._refreshing: dict[Hashable, asyncio.Task[None]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The value of `key`: cached, or loaded now when there is none."""
        entry = self._entries.get(key)
        if entry is None:
            return await self._load(key, load)
        if time.monotonic() - entry[0] >= self.ttl_s and key not in self._refreshing:
            task = asyncio.create_task(self._refresh(key, load), name="cache-refresh")
            self._refreshing[key] = task
            task.add_done_callback(lambda _t: self._refreshing.pop(key, None))
        return entry[1]

    def forget(self, key: Hashable) -> None:
        """Drop an entry."""
        self._entries.pop(key, None)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        value = await load()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare and cheap to rebuild; no LRU bookkeeping per hit
        self._entries[key] = (time.monotonic(), value)
        return value

    async def _refresh(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> None:
        try:
            await self._load(key, load)
        except self.evict_on:
            self.forget(key)
        except Exception:  # noqa: BLE001 - keep serving the stale value; the next read retries
            log.warning("could not refresh a cached search dependency", exc_info=True)
