"""Bulk upload: rows from a CSV file or a folder of images, sent in chunks of 100 per
`/insert`, followed until indexed, with a progress bar and every per-item error."""
from __future__ import annotations

import asyncio
import csv
import itertools
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from magpie_sdk import _ops as ops
from magpie_sdk.errors import TransactionTimeout
from magpie_sdk.types import BulkResult, InsertResult, ItemError, TransactionStatus

if TYPE_CHECKING:
    from magpie_sdk.aio import AsyncMagpie
    from magpie_sdk.client import Magpie

IMAGE_SUFFIXES = frozenset({".bmp", ".dib", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".pbm",
                            ".pgm", ".ppm", ".sr", ".ras", ".tiff", ".tif", ".gif"})
ERROR_PAGE = 1000  # the status route's largest error page


@dataclass(frozen=True)
class Options:
    """How a bulk upload runs (see Magpie.bulk_insert)."""

    total: int | None = None
    chunk_size: int = ops.MAX_BATCH
    progress: bool = True
    wait: bool = True
    timeout: float = 3600
    max_in_flight: int = 8


# --- sources -----------------------------------------------------------------------------
def csv_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a UTF-8 CSV file (BOM or not) as dicts by header; empty cells left out."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            yield {k: v for k, v in row.items() if k and v not in (None, "")}


def count_csv_rows(path: Path) -> int:
    """How many data rows a CSV file has (quoted newlines counted right)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def folder_rows(folder: Path, base_url: str, fields: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per image file under `folder` (sorted): im_name = its path without the
    extension, im_url = `base_url` + its path, URL-quoted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(folder).as_posix()
        rows.append({"im_name": rel.rsplit(".", 1)[0], "im_url": f"{base_url.rstrip('/')}/{quote(rel)}",
                     **(fields or {})})
    return rows


def chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive lists of at most `size` rows (streamed: a huge CSV is never all in memory)."""
    if not 1 <= size <= ops.MAX_BATCH:
        raise ValueError(f"chunk_size must be between 1 and {ops.MAX_BATCH}")
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


# --- bookkeeping shared by the sync and async loops ----------------------------------------
class _Bar:
    """A tqdm bar when tqdm is installed and wanted; else nothing."""

    def __init__(self, total: int | None, enabled: bool, desc: str) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Tracker:
    """What a bulk upload has sent and what its transactions reported so far."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.result = BulkResult()
        self.pending: dict[int, int] = {}  # trans_id -> items processed seen so far
        self.bar = _Bar(opts.total, opts.progress, "indexing" if opts.wait else "sending")
        self.deadline = time.monotonic() + opts.timeout

    def sent(self, chunk: list[Mapping[str, Any]], answer: InsertResult) -> None:
        """Book a chunk's answer: refused items fail now; merged duplicates need no wait."""
        self.result.sent += len(chunk)
        self.result.errors += answer.errors
        self.result.fail_count += len(answer.errors)
        if answer.trans_id is not None and answer.total:
            self.result.trans_ids.append(answer.trans_id)
            if self.opts.wait:
                self.pending[answer.trans_id] = 0
        self.bar.update(len(chunk) - answer.total if self.opts.wait else len(chunk))

    def polled(self, st: TransactionStatus) -> bool:
        """Book a status; True when the transaction is done and has errors still to fetch."""
        seen = self.pending.get(st.trans_id, 0)
        self.bar.update(max(st.processed - seen, 0))
        if not st.done:
            self.pending[st.trans_id] = max(st.processed, seen)
            return False
        del self.pending[st.trans_id]
        self.result.success_count += st.success_count
        self.result.fail_count += st.fail_count
        self.result.errors += st.errors
        return len(st.errors) < st.fail_count

    def check_deadline(self) -> None:
        """TransactionTimeout once the upload ran past its timeout."""
        if time.monotonic() > self.deadline:
            self.bar.close()
            raise TransactionTimeout(f"{len(self.pending)} transactions unfinished after "
                                     f"{self.opts.timeout:.0f} s", sorted(self.pending))


# --- sync --------------------------------------------------------------------------------
def _poll_sync(client: Magpie, tracker: Tracker, poll: float) -> None:
    for trans_id in list(tracker.pending):
        st = client.insert_status(trans_id, 1, ERROR_PAGE)
        if tracker.polled(st):
            tracker.result.errors += _all_errors_sync(client, st).errors[len(st.errors):]
    if tracker.pending:
        tracker.check_deadline()
        time.sleep(poll)


def run_sync(client: Magpie, rows: Iterable[Mapping[str, Any]], opts: Options, poll: float = 0.3) -> BulkResult:
    """Send `rows` in chunks through `client.insert`, and follow them as `opts` says."""
    tracker = Tracker(opts)
    try:
        for chunk in chunks(rows, opts.chunk_size):
            while len(tracker.pending) >= opts.max_in_flight:
                _poll_sync(client, tracker, poll)
            tracker.sent(chunk, client.insert(chunk))
        while tracker.pending:
            _poll_sync(client, tracker, poll)
    finally:
        tracker.bar.close()
    return tracker.result


def wait_sync(client: Magpie, trans_ids: list[int], timeout: float, poll: float) -> list[TransactionStatus]:
    """Poll until every transaction is done; each final status with all its errors."""
    deadline = time.monotonic() + timeout
    final: dict[int, TransactionStatus] = {}
    while len(final) < len(trans_ids):
        for tid in trans_ids:
            if tid not in final and (st := client.insert_status(tid, 1, ERROR_PAGE)).done:
                final[tid] = _all_errors_sync(client, st)
        if len(final) < len(trans_ids):
            if time.monotonic() > deadline:
                raise TransactionTimeout(f"transactions unfinished after {timeout:.0f} s",
                                         [t for t in trans_ids if t not in final])
            time.sleep(poll)
    return [final[t] for t in trans_ids]


def _all_errors_sync(client: Magpie, st: TransactionStatus) -> TransactionStatus:
    errors, page = list(st.errors), 2
    while len(errors) < st.fail_count:
        more = client.insert_status(st.trans_id, page, ERROR_PAGE).errors
        if not more:
            break
        errors += more
        page += 1
    return _with_errors(st, errors)


def _with_errors(st: TransactionStatus, errors: list[ItemError]) -> TransactionStatus:
    return replace(st, errors=errors)


# --- async -------------------------------------------------------------------------------
async def _poll_async(client: AsyncMagpie, tracker: Tracker, poll: float) -> None:
    statuses = await asyncio.gather(*(client.insert_status(t, 1, ERROR_PAGE) for t in list(tracker.pending)))
    for st in statuses:
        if tracker.polled(st):
            full = await _all_errors_async(client, st)
            tracker.result.errors += full.errors[len(st.errors):]
    if tracker.pending:
        tracker.check_deadline()
        await asyncio.sleep(poll)


async def run_async(client: AsyncMagpie, rows: Iterable[Mapping[str, Any]], opts: Options,
                    poll: float = 0.3) -> BulkResult:
    """The async twin of run_sync."""
    tracker = Tracker(opts)
    try:
        for chunk in chunks(rows, opts.chunk_size):
            while len(tracker.pending) >= opts.max_in_flight:
                await _poll_async(client, tracker, poll)
            tracker.sent(chunk, await client.insert(chunk))
        while tracker.pending:
            await _poll_async(client, tracker, poll)
    finally:
        tracker.bar.close()
    return tracker.result


async def _all_errors_async(client: AsyncMagpie, st: TransactionStatus) -> TransactionStatus:
    errors, page = list(st.errors), 2
    while len(errors) < st.fail_count:
        more = (await client.insert_status(st.trans_id, page, ERROR_PAGE)).errors
        if not more:
            break
        errors += more
        page += 1
    return _with_errors(st, errors)


async def wait_async(client: AsyncMagpie, trans_ids: list[int], timeout: float,
                     poll: float) -> list[TransactionStatus]:
    """The async twin of wait_sync."""
    deadline = time.monotonic() + timeout
    final: dict[int, TransactionStatus] = {}
    while len(final) < len(trans_ids):
        for tid in trans_ids:
            if tid not in final and (st := await client.insert_status(tid, 1, ERROR_PAGE)).done:
                final[tid] = await _all_errors_async(client, st)
        if len(final) < len(trans_ids):
            if time.monotonic() > deadline:
                raise TransactionTimeout(f"transactions unfinished after {timeout:.0f} s",
                                         [t for t in trans_ids if t not in final])
            await asyncio.sleep(poll)
    return [final[t] for t in trans_ids]
