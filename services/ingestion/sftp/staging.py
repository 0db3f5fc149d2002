"""Reading a feed file into its transaction without applying anything yet ("staging").

Each chunk of rows is validated and recorded, with the feed's progress, in one database
transaction: valid rows as `staged` TxItems (not `pending`, so nothing replays or publishes
them), refused rows as `failed` with their line. Nothing reaches the catalog until the whole
file is read, so a FULL feed can still be refused, and a crash resumes after the last chunk.

Within a feed the LAST row of an im_name wins: the earlier row is re-keyed `<line N>` and
failed (107) with a message naming the line that replaced it. The memory used is one chunk;
the feed's names so far live in the database, not in a set.
"""
from __future__ import annotations

import asyncio
import re
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from magpie.common.controlplane.schema_rules import MAX_IM_NAME_LEN
from magpie.common.controlplane.tables import utcnow
from magpie.common.errors import ImageNameNotFound, InvalidImageName, MagpieError
from magpie.common.events.ingest import ItemOp
from magpie.ingestion import csv_feed
from magpie.ingestion.csv_feed import CsvFormatError, CsvRow
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.sftp.tables import Feed
from magpie.ingestion.tables import Transaction, TxItem
from magpie.ingestion.validation import validate_item

CHUNK = 500
STAGED = "staged"  # fits TxItem.state (8 characters)
FILE_KEY = "<file>"  # the TxItem of an error about the whole file
_RESERVED = re.compile(r"<(line \d+|file)>")  # our own keys: a row may not take them


class Superseded(Exception):
    """Another run recorded this chunk first (the feed moved on)."""


def line_key(line: int) -> str:
    """The TxItem key of a row without a usable (or winning) im_name."""
    return f"<line {line}>"


def is_own_key(key: str) -> bool:
    """Whether a TxItem key is ours (`<line N>`, `<file>`), not an im_name."""
    return bool(_RESERVED.fullmatch(key))


def usable_name(values: dict[str, str]) -> str | None:
    """The row's im_name when it can key an item."""
    name = values.get("im_name")
    if isinstance(name, str) and name.strip() and len(name) <= MAX_IM_NAME_LEN and not _RESERVED.fullmatch(name):
        return name
    return None


async def stage(deps: IngestDeps, feed: Feed, path: Path) -> CsvFormatError | None:
    """Record the feed's rows from its first unrecorded one; returns the error that stopped the file."""
    with await asyncio.to_thread(open, path, "rb") as f:
        try:
            parsed = await asyncio.to_thread(csv_feed.open_feed, f, gzip=True)
        except CsvFormatError as err:
            return err
        rows = iter(parsed)
        if feed.rows_read:
            await asyncio.to_thread(lambda: sum(1 for _ in islice(rows, feed.rows_read)))
        elif feed.mode != "DELETE":
            await _note_ignored(deps, feed, parsed.header)
        while True:
            chunk, fatal = await asyncio.to_thread(csv_feed.take, rows, CHUNK)
            if chunk:
                await record_chunk(deps, feed, chunk)
            if fatal is not None or len(chunk) < CHUNK:
                return fatal


async def _note_ignored(deps: IngestDeps, feed: Feed, header: list[str]) -> None:
    schema = await deps.schemas.get(feed.app_id)
    feed.ignored = [c for c in csv_feed.custom_columns(header) if schema.field(c) is None]
    async with deps.store.db() as s, s.begin():
        await s.execute(update(Feed).where(Feed.feed_id == feed.feed_id).values(ignored=feed.ignored))


async def _check(deps: IngestDeps, feed: Feed, rows: list[CsvRow]) -> list[tuple[CsvRow, Any, MagpieError | None]]:
    """Each row with its valid item (or None) and its error."""
    names = [n for r in rows if r.error is None and (n := usable_name(r.values))]
    known = await deps.store.existing(feed.app_id, names)
    fields = list((await deps.schemas.get(feed.app_id)).fields)
    out = []
    for row in rows:
        err, item = row.error, None
        name = usable_name(row.values)
        if err is None and name is None:
            err = InvalidImageName()
        elif err is None and feed.mode == "DELETE":
            item, err = (name, None) if name in known else (None, ImageNameNotFound())
        elif err is None:
            try:
                item = validate_item(row.line, row.values, fields, exists=name in known)
            except MagpieError as exc:
                err = exc
        out.append((row, item, err))
    return out


def _message(row: CsvRow, err: MagpieError) -> str:
    # The parser's messages name their line already.
    return (err.detail if isinstance(err, CsvFormatError) else f"Line {row.line}: {err.detail}")[:1000]


def _superseded(name: str, line: int, by: int) -> str:
    return (f"Line {line}: im_name {name!r} appears again on line {by}; the last row of a name "
            "wins, so this one is not applied.")[:1000]


async def record_chunk(deps: IngestDeps, feed: Feed, rows: list[CsvRow]) -> None:
    """Record a chunk of rows in the feed's transaction with the feed's progress, atomically."""
    checked = await _check(deps, feed, rows)
    counts = dict(feed.counts or {})
    for k in ("rows", "valid", "invalid", "duplicates"):
        counts.setdefault(k, 0)
    counts["rows"] += len(rows)
    done, trans_id = feed.rows_read, feed.trans_id
    async with deps.store.db() as s, s.begin():
        names = {n for r, _, _ in checked if (n := usable_name(r.values))}
        taken = {n: (seq, state) for n, seq, state in (await s.execute(
            select(TxItem.im_name, TxItem.seq, TxItem.state).where(
                TxItem.trans_id == trans_id, TxItem.im_name.in_(names)))).all()}
        items: dict[str, dict[str, Any]] = {}  # by key, in line order
        for row, item, err in checked:
            name = usable_name(row.values)
            if name is not None and (name in items or name in taken):
                counts["duplicates"] += 1
                if name in items:  # earlier in this chunk
                    earlier = items.pop(name)
                    was_staged = earlier["state"] == STAGED
                    earlier.update(im_name=line_key(earlier["seq"]), state="failed", error_code=107,
                                   error_message=_superseded(name, earlier["seq"], row.line)
                                   if was_staged else earlier["error_message"])
                    items[earlier["im_name"]] = earlier
                else:  # in an earlier chunk
                    seq, state = taken.pop(name)
                    was_staged = state == STAGED
                    values: dict[str, Any] = {"im_name": line_key(seq), "state": "failed"}
                    if was_staged:
                        values.update(error_code=107, error_message=_superseded(name, seq, row.line))
                    await s.execute(update(TxItem).where(TxItem.trans_id == trans_id, TxItem.im_name == name)
                                    .values(**values))
                if was_staged:
                    counts["valid"] -= 1
                    counts["invalid"] += 1
            key = name if name is not None else line_key(row.line)
            items[key] = _item_row(feed, row, key, item, err)
            counts["valid" if err is None else "invalid"] += 1
        if items:
            await s.execute(TxItem.__table__.insert(), list(items.values()))
        moved = await s.execute(update(Feed).where(
            Feed.feed_id == feed.feed_id, Feed.state == "staging", Feed.rows_read == done)
            .values(rows_read=done + len(rows), counts=counts, updated_at=utcnow()))
        if moved.rowcount != 1:
            raise Superseded()
        await s.execute(update(Transaction).where(Transaction.trans_id == trans_id)
                        .values(total=Transaction.total + len(rows), updated_at=utcnow()))
    feed.rows_read, feed.counts = done + len(rows), counts


def _item_row(feed: Feed, row: CsvRow, key: str, item: Any, err: MagpieError | None) -> dict[str, Any]:
    if feed.mode == "DELETE":
        op = ItemOp.REMOVE
    else:
        op = ItemOp.UPSERT if item is None or item.im_url else ItemOp.METADATA
    valid = err is None and item is not None and feed.mode != "DELETE"
    return {"trans_id": feed.trans_id, "im_name": key, "seq": row.line, "app_id": feed.app_id, "op": op.value,
            "state": STAGED if err is None else "failed",
            "im_url": item.im_url if valid else None, "fields": item.fields if valid else {},
            "warnings": [], "error_code": err.code if err is not None else None,
            "error_message": _message(row, err) if err is not None else None}
