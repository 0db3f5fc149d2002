"""Filing a finished feed: its data file out of /processing, a result file with per-row errors next to it.

`<feed id>_<name>.csv.gz` goes to /processed (done, skipped) or /failed (refused, failed,
rejected) with `<feed id>_<name>.result.csv`: a summary row, then one row per refused or
failed item, read from the database a page at a time (bounded memory whatever the feed size).
"""
from __future__ import annotations

import csv
import os
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.tables import utcnow
from magpie.ingestion.sftp.staging import is_own_key
from magpie.ingestion.sftp.tables import Feed
from magpie.ingestion.tables import TxItem

PAGE = 1000
GOOD_STATES = ("done", "skipped")
RESULT_HEADER = ["line", "im_name", "error_code", "message"]


def result_name(data_name: str) -> str:
    """`x.csv.gz` -> `x.result.csv` (any other name just gets `.result.csv`)."""
    stem = data_name[:-7] if data_name.lower().endswith(".csv.gz") else data_name
    return stem + ".result.csv"


async def file_away(db: async_sessionmaker, root: Path, feed: Feed) -> None:
    """Move a finished feed's file and write its result file; nothing to do when already filed."""
    if feed.result_path is not None:
        return
    app_dir = root / feed.app_id
    folder = "processed" if feed.state in GOOD_STATES else "failed"
    name = Path(feed.path).name
    data_rel, result_rel = f"{folder}/{name}", f"{folder}/{result_name(name)}"
    counts = await _outcomes(db, feed.trans_id) if feed.trans_id else {}
    tmp = app_dir / (result_rel + ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(RESULT_HEADER)
        out.writerow(["", "", "", summary(feed, counts)])
        if feed.trans_id:
            async for page in _errors(db, feed.trans_id):
                out.writerows(page)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, app_dir / result_rel)
    source = app_dir / feed.path
    if source.exists() and feed.path != data_rel:
        os.replace(source, app_dir / data_rel)
    async with db() as s, s.begin():
        await s.execute(update(Feed).where(Feed.feed_id == feed.feed_id)
                        .values(path=data_rel, result_path=result_rel, updated_at=utcnow()))
    feed.path, feed.result_path = data_rel, result_rel


def summary(feed: Feed, outcomes: dict[str, int]) -> str:
    """One sentence on what became of the feed."""
    c = feed.counts or {}
    parts = [f"{feed.state.upper()}: {feed.mode or 'unknown'} feed {feed.filename}"]
    if feed.trans_id:
        parts.append(f"trans_id {feed.trans_id}")
    if "rows" in c:
        parts.append(f"{c['rows']} rows read, {c.get('valid', 0)} accepted, {c.get('invalid', 0)} refused "
                     f"({c.get('duplicates', 0)} replaced by a later row of the same im_name)")
    if outcomes:
        parts.append(f"{outcomes.get('ok', 0)} items indexed, {outcomes.get('failed', 0)} failed")
    if c.get("removed"):
        parts.append(f"{c['removed']} items not in the feed removed")
    if feed.ignored:
        parts.append(f"columns ignored (not in the schema): {', '.join(feed.ignored)}")
    text = "; ".join(parts) + "."
    return f"{text} {feed.error}" if feed.error else text


async def _outcomes(db: async_sessionmaker, trans_id: int) -> dict[str, int]:
    async with db() as s:
        return dict((await s.execute(select(TxItem.state, func.count()).where(TxItem.trans_id == trans_id)
                                     .group_by(TxItem.state))).all())


async def _errors(db: async_sessionmaker, trans_id: int) -> AsyncIterator[list[list[object]]]:
    """Failed items in line order, a page at a time (keyset on seq, im_name)."""
    after: tuple[int, str] = (-1, "")
    while True:
        async with db() as s:
            rows = (await s.execute(select(TxItem.seq, TxItem.im_name, TxItem.error_code, TxItem.error_message)
                                    .where(TxItem.trans_id == trans_id, TxItem.state == "failed",
                                           tuple_(TxItem.seq, TxItem.im_name) > tuple_(*after))
                                    .order_by(TxItem.seq, TxItem.im_name).limit(PAGE))).all()
        if not rows:
            return
        yield [[seq or "", "" if is_own_key(name) else name, code, msg]
               for seq, name, code, msg in rows]
        after = (rows[-1][0], rows[-1][1])
        if len(rows) < PAGE:
            return


def feed_out(feed: Feed) -> dict[str, object]:
    """A feed as the API and the CLI show it (paths as the SFTP client sees them)."""
    return {
        "feed_id": feed.feed_id, "filename": feed.filename, "mode": feed.mode or None, "state": feed.state,
        "trans_id": feed.trans_id, "size_bytes": feed.size_bytes, "rows_read": feed.rows_read,
        "counts": feed.counts or {}, "ignored_columns": feed.ignored or [], "error": feed.error,
        "forced": feed.force, "file": "/" + feed.path,
        "result_file": "/" + feed.result_path if feed.result_path else None,
        "created_at": feed.created_at.isoformat(), "updated_at": feed.updated_at.isoformat(),
    }
