"""Runs feeds in the background: one at a time per application (in arrival order), apps in parallel."""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import or_, select

from magpie.common.errors import MagpieError
from magpie.ingestion.sftp import feed as feeds
from magpie.ingestion.sftp import results
from magpie.ingestion.sftp.feed import ACTIVE, FAILED, FeedDeps
from magpie.ingestion.sftp.tables import Feed

log = logging.getLogger(__name__)


class Runner:
    """Per-application loops that take each unfinished feed to its end; resumable after a crash."""

    def __init__(self, deps: FeedDeps, *, attempts: int = 3, backoff_s: float = 1.0) -> None:
        self.deps = deps
        self.attempts, self.backoff_s = attempts, backoff_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def kick(self, app_id: str) -> asyncio.Task[None]:
        """Make sure the application's loop runs (it exits when no feed is left)."""
        task = self._tasks.get(app_id)
        if task is None or task.done():
            task = asyncio.create_task(self._loop(app_id), name=f"sftp-feeds-{app_id}")
            self._tasks[app_id] = task
        return task

    async def resume(self) -> int:
        """Start the loop of every application with an unfinished (or unfiled) feed; returns how many."""
        async with self.deps.ingest.store.db() as s:
            apps = set(await s.scalars(select(Feed.app_id).where(_unfinished()).distinct()))
        for app_id in apps:
            self.kick(app_id)
        return len(apps)

    async def settle(self) -> None:
        """Wait until every loop is idle (tests, benchmarks)."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the loops; each feed resumes from its last recorded step on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, app_id: str) -> None:
        while (feed_id := await self._next(app_id)) is not None:
            if not await self._run(feed_id):
                return  # left as it is: a later resume retries it

    async def _next(self, app_id: str) -> str | None:
        async with self.deps.ingest.store.db() as s:
            return await s.scalar(select(Feed.feed_id).where(Feed.app_id == app_id, _unfinished())
                                  .order_by(Feed.created_at, Feed.feed_id).limit(1))

    async def _run(self, feed_id: str) -> bool:
        """Run one feed with retries; False when it must wait (a dependency is down)."""
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                await feeds.run(self.deps, feed_id)
                return True
            except Exception as exc:  # noqa: BLE001 - CancelledError passes: a stop leaves it as is
                log.exception("SFTP feed %s failed (attempt %d of %d)", feed_id, attempt, self.attempts)
                if isinstance(exc, MagpieError) and exc.retryable:
                    return False
                error = exc.detail if isinstance(exc, MagpieError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, MagpieError):
                    break
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        try:
            feed = await feeds.load(self.deps, feed_id)
            if feed.state in ACTIVE:
                await feeds.conclude(self.deps, feed, FAILED, f"Processing stopped: {error}")
                feed = await feeds.load(self.deps, feed_id)
            await results.file_away(self.deps.ingest.store.db, self.deps.root, feed)
            return True
        except Exception:  # noqa: BLE001 - left unfinished: a later resume retries it
            log.exception("could not mark SFTP feed %s failed", feed_id)
            return False


def _unfinished():  # noqa: ANN202 - a SQL condition
    return or_(Feed.state.in_(ACTIVE), Feed.result_path.is_(None))
