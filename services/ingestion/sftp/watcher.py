"""Finds completed feeds in each application's /indexing and claims them for the runner.

A feed is complete when its empty `.txt` marker is there and neither file is still being
written by a client; a DELETE file also waits (up to five minutes) while an INCREMENT of the
same prefix sits in /indexing without its marker, so that removals come after the increment.
Claiming records the feed (with its transaction), then moves the data file to /processing
and deletes the marker; the runner does the rest. A wrong name, a prefix
that is not an app key, or a marker left without its data file is rejected at once: a feed
record with the reason, and the files moved to /failed with a result file that says why.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from magpie.common.controlplane.tables import AppKey, utcnow
from magpie.ingestion.sftp import results
from magpie.ingestion.sftp.feed import ACTIVE, QUEUED, REJECTED, SKIPPED, FeedDeps, new_feed_id
from magpie.ingestion.sftp.names import MODE_RANK, FeedNameError, is_marker, marker_target, parse_feed_name
from magpie.ingestion.sftp.runner import Runner
from magpie.ingestion.sftp.tables import Feed
from magpie.ingestion.store import new_trans_id
from magpie.ingestion.tables import Transaction

log = logging.getLogger(__name__)
MARKER_GRACE_S = 10.0  # a marker may arrive a moment before its data file (parallel uploads)
DELETE_WAIT_S = 300.0  # a DELETE waits this long for the marker of an INCREMENT uploaded with it


class Watcher:
    """Scans every application's /indexing on a timer, or at once when nudged (a file was closed)."""

    def __init__(self, deps: FeedDeps, runner: Runner, *, busy: Callable[[Path], bool] = lambda p: False,
                 poll_s: float = 1.0, marker_grace_s: float = MARKER_GRACE_S, resume_s: float = 30.0,
                 delete_wait_s: float = DELETE_WAIT_S) -> None:
        self.deps, self.runner, self.busy = deps, runner, busy
        self.poll_s, self.marker_grace_s, self.resume_s = poll_s, marker_grace_s, resume_s
        self.delete_wait_s = delete_wait_s
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Scan now (called when a client closes a file)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Scan until `stop` is set; a failed scan is logged and retried on the next tick."""
        last_resume = time.monotonic()
        while not stop.is_set():
            try:
                await self.scan()
                if time.monotonic() - last_resume > self.resume_s:  # feeds left waiting on a dependency
                    last_resume = time.monotonic()
                    await self.runner.resume()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad scan
                log.exception("SFTP scan failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    async def scan(self) -> list[Feed]:
        """Claim every completed feed now; returns the feeds recorded."""
        claimed: list[Feed] = []
        if not self.deps.root.is_dir():
            return claimed
        for app_dir in sorted(p for p in self.deps.root.iterdir() if (p / "indexing").is_dir()):
            found = [await self._claim(app_dir.name, m, d) for m, d in self._ready(app_dir / "indexing")]
            claimed += [f for f in found if f is not None]
            if any(f is not None and f.state == QUEUED for f in found):
                self.runner.kick(app_dir.name)
        return claimed

    def _ready(self, folder: Path) -> list[tuple[str, str | None]]:
        """(marker, data file or None) of the complete feeds in `folder`, FULL, INCREMENT, then DELETE."""
        files = {e.name: e for e in os.scandir(folder) if e.is_file(follow_symlinks=False)}
        ready, used = [], set()
        for marker in sorted(n for n in files if is_marker(n)):
            data = marker_target(marker, files)
            if self.busy(folder / marker) or (data and self.busy(folder / data)):
                continue  # still being uploaded
            if data is None and time.time() - files[marker].stat().st_mtime < self.marker_grace_s:
                continue
            if data is not None and data in used:  # two markers for one file: the first claims it
                (folder / marker).unlink(missing_ok=True)
                continue
            used.add(data)
            ready.append((marker, data))
        # An INCREMENT still uploading or unmarked holds back its DELETE: removals come after it.
        waiting = {_prefix(n) for n in files if _mode(n) == "INCREMENT" and n not in used}
        ready = [(m, d) for m, d in ready if not (d and _mode(d) == "DELETE" and _prefix(d) in waiting
                                                  and time.time() - files[m].stat().st_mtime < self.delete_wait_s)]
        return sorted(ready, key=lambda md: (_rank(md[1]), md[0]))

    async def _claim(self, app_id: str, marker: str, data: str | None) -> Feed | None:
        folder = self.deps.root / app_id / "indexing"
        feed_id = new_feed_id()
        if data is None:
            stem = marker[:-4]
            return await self._reject(app_id, feed_id, marker, None, "", (
                f"The marker {marker} has no data file: upload {stem}.csv.gz to /indexing first, "
                "then the empty marker."))
        try:
            name = parse_feed_name(data)
        except FeedNameError as err:
            return await self._reject(app_id, feed_id, data, marker, "", err.detail)
        if name.prefix not in await self._app_keys(app_id):
            return await self._reject(app_id, feed_id, data, marker, name.mode, (
                f"{name.prefix!r} is not a live app key of this application: name the file "
                f"<app key>_{name.mode}.csv.gz with one of its app keys (see `magpie sftp show`)."))
        size, digest = await asyncio.to_thread(_digest, folder / data)
        rel = f"processing/{feed_id}_{data}"
        now = utcnow()
        async with self.deps.ingest.store.db() as s, s.begin():
            twin = await s.scalar(select(Feed).where(
                Feed.app_id == app_id, Feed.mode == name.mode, Feed.sha256 == digest, Feed.state.in_(ACTIVE)))
            feed = Feed(feed_id=feed_id, app_id=app_id, mode=name.mode, filename=data, path=rel,
                        size_bytes=size, sha256=digest, counts={}, ignored=[], created_at=now, updated_at=now,
                        state=QUEUED if twin is None else SKIPPED, rows_read=0, force=False)
            if twin is None:
                feed.trans_id = new_trans_id()
                s.add(Transaction(trans_id=feed.trans_id, app_id=app_id, source="sftp", total=1,
                                  created_at=now, updated_at=now))
            else:
                feed.error = (f"Identical to feed {twin.feed_id} ({twin.filename}, trans_id {twin.trans_id}), "
                              "which is still being processed: this upload is not processed twice.")
            s.add(feed)
        os.replace(folder / data, self.deps.root / app_id / rel)
        (folder / marker).unlink(missing_ok=True)
        log.info("SFTP feed %s claimed: %s/%s (%s, %d bytes)", feed_id, app_id, data, feed.state, size)
        if twin is not None:
            await results.file_away(self.deps.ingest.store.db, self.deps.root, feed)
        return feed

    async def _reject(self, app_id: str, feed_id: str, name: str, marker: str | None, mode: str,
                      reason: str) -> Feed:
        app_dir = self.deps.root / app_id
        rel = f"processing/{feed_id}_{name}"
        now = utcnow()
        feed = Feed(feed_id=feed_id, app_id=app_id, mode=mode, filename=name, path=rel, state=REJECTED,
                    size_bytes=(app_dir / "indexing" / name).stat().st_size, counts={}, ignored=[],
                    error=reason, rows_read=0, force=False, created_at=now, updated_at=now)
        os.replace(app_dir / "indexing" / name, app_dir / rel)
        if marker:
            (app_dir / "indexing" / marker).unlink(missing_ok=True)
        async with self.deps.ingest.store.db() as s, s.begin():
            s.add(feed)
        log.info("SFTP file %s/%s rejected: %s", app_id, name, reason)
        await results.file_away(self.deps.ingest.store.db, self.deps.root, feed)
        return feed

    async def _app_keys(self, app_id: str) -> set[str]:
        async with self.deps.ingest.store.db() as s:
            return set(await s.scalars(select(AppKey.app_key).where(
                AppKey.app_id == app_id, AppKey.revoked_at.is_(None))))


def _mode(name: str) -> str | None:
    try:
        return parse_feed_name(name).mode
    except FeedNameError:
        return None


def _prefix(name: str) -> str | None:
    try:
        return parse_feed_name(name).prefix
    except FeedNameError:
        return None


def _rank(data: str | None) -> int:
    mode = _mode(data) if data else None
    return MODE_RANK[mode] if mode else 9


def _digest(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def waiting_files(root: Path, app_id: str) -> list[dict[str, object]]:
    """Files in /indexing that wait for their marker (nothing is processed without it)."""
    folder = root / app_id / "indexing"
    if not folder.is_dir():
        return []
    files = {e.name: e for e in os.scandir(folder) if e.is_file(follow_symlinks=False)}
    targets = {marker_target(m, files) for m in files if is_marker(m)}
    return [{"filename": n, "size_bytes": e.stat().st_size} for n, e in sorted(files.items())
            if not is_marker(n) and n not in targets]
