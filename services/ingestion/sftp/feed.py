"""A feed's life after its marker: stage, check, apply, (FULL) remove the rest, report.

States, each resumable after a crash: queued -> staging -> applying -> indexing ->
(FULL) removing -> settling -> done; or refused / failed / skipped. Nothing is applied
before the whole file is read, and a FULL feed removes nothing before its own rows are
indexed: a process killed at any point leaves the old catalog whole (plus whatever
updates were applied) and the next start completes the feed.

The feed's transaction (`source` sftp) holds one item per data row, plus one per item a
FULL feed removes; while the feed runs its total counts one more ("the file"), so
`processed_percent` reaches 100 only once the feed is finished.
"""
from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, delete, exists, func, insert, select, update

from magpie.common.controlplane.tables import utcnow
from magpie.common.errors import Conflict, NotFound
from magpie.common.events.ingest import ItemAccepted, ItemOp
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.sftp import results
from magpie.ingestion.sftp.guard import FeedTally, GuardPolicy, check_full
from magpie.ingestion.sftp.staging import CHUNK, FILE_KEY, STAGED, Superseded, stage
from magpie.ingestion.sftp.tables import Feed
from magpie.ingestion.tables import CatalogItem, Transaction, TxItem

QUEUED, STAGING, APPLYING, INDEXING, REMOVING, SETTLING = (
    "queued", "staging", "applying", "indexing", "removing", "settling")
DONE, REFUSED, FAILED, REJECTED, SKIPPED = "done", "refused", "failed", "rejected", "skipped"
ACTIVE = (QUEUED, STAGING, APPLYING, INDEXING, REMOVING, SETTLING)
NOT_APPLIED = 400  # error code of staged rows a refused or failed feed leaves unapplied


@dataclass
class FeedDeps:
    """What feed processing needs; `root` is `<data_dir>/sftp` (one folder per application)."""

    ingest: IngestDeps
    root: Path
    policy: GuardPolicy = field(default_factory=GuardPolicy)
    poll_s: float = 0.5  # how often "indexed yet?" is asked


def new_feed_id() -> str:
    """Sortable and readable in file names: `20250102-030405-a1b2c3`."""
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def file_of(deps: FeedDeps, feed: Feed) -> Path:
    """Where the feed's data file is now."""
    return deps.root / feed.app_id / feed.path


async def load(deps: FeedDeps, feed_id: str) -> Feed:
    """A feed by id."""
    async with deps.ingest.store.db() as s:
        feed = await s.get(Feed, feed_id)
    if feed is None:
        raise NotFound(f"No feed {feed_id}.")
    return feed


async def run(deps: FeedDeps, feed_id: str) -> Feed:
    """Take a feed from its current state to a final one, then file its data and result."""
    feed = await load(deps, feed_id)
    while feed.state in ACTIVE:
        try:
            await _STEPS[feed.state](deps, feed)
        except Superseded:
            pass  # another run moved it on: read where it is now
        feed = await load(deps, feed_id)
    await results.file_away(deps.ingest.store.db, deps.root, feed)
    return feed


# --- steps: each moves the feed to its next state ---------------------------------------------
async def _queued(deps: FeedDeps, feed: Feed) -> None:
    path = file_of(deps, feed)
    if not path.is_file():  # a crash between recording the claim and moving the file
        source = deps.root / feed.app_id / "indexing" / feed.filename
        if not source.is_file():
            return await conclude(deps, feed, FAILED, "The file disappeared before it could be read.")
        os.replace(source, path)
    await _move(deps, feed, QUEUED, STAGING)


async def _staging(deps: FeedDeps, feed: Feed) -> None:
    fatal = await stage(deps.ingest, feed, file_of(deps, feed))
    if fatal is not None:
        return await conclude(deps, feed, FAILED, f"{fatal.detail} Nothing of this file was applied.",
                              fatal_line=fatal.line)
    counts = dict(feed.counts)
    if feed.mode == "FULL":
        tally = await full_tally(deps.ingest, feed)
        counts.update(catalog=tally.catalog, would_remove=tally.would_remove)
        reason = None if feed.force else check_full(tally, deps.policy)
        if reason is not None:
            return await conclude(deps, feed, REFUSED, f"FULL feed refused; nothing was changed. {reason} "
                                  f"To apply it anyway: `magpie sftp force --app {feed.app_id} {feed.feed_id}`.")
    await _move(deps, feed, STAGING, APPLYING, counts=counts)


async def _applying(deps: FeedDeps, feed: Feed) -> None:
    after = ""
    while (after := await apply_chunk(deps.ingest, feed, after)) is not None:
        pass
    await _move(deps, feed, APPLYING, INDEXING)


async def _indexing(deps: FeedDeps, feed: Feed) -> None:
    await wait_indexed(deps, feed.trans_id)
    await _move(deps, feed, INDEXING, REMOVING if feed.mode == "FULL" else SETTLING)


async def _removing(deps: FeedDeps, feed: Feed) -> None:
    after = ""
    while (after := await remove_chunk(deps.ingest, feed, after)) is not None:
        pass
    await _move(deps, feed, REMOVING, SETTLING)


async def _settling(deps: FeedDeps, feed: Feed) -> None:
    await wait_indexed(deps, feed.trans_id)
    await conclude(deps, feed, DONE, None)


_STEPS = {QUEUED: _queued, STAGING: _staging, APPLYING: _applying, INDEXING: _indexing,
          REMOVING: _removing, SETTLING: _settling}


async def _move(deps: FeedDeps, feed: Feed, old: str, new: str, **values: object) -> None:
    async with deps.ingest.store.db() as s, s.begin():
        moved = await s.execute(update(Feed).where(Feed.feed_id == feed.feed_id, Feed.state == old)
                                .values(state=new, updated_at=utcnow(), **values))
    if moved.rowcount != 1:
        raise Superseded()


# --- the work of the steps --------------------------------------------------------------------
async def full_tally(deps: IngestDeps, feed: Feed) -> FeedTally:
    """The catalog before the feed, and how much of it the feed does not name."""
    before = and_(CatalogItem.app_id == feed.app_id, CatalogItem.last_trans_id < feed.trans_id)
    async with deps.store.db() as s:
        catalog = await s.scalar(select(func.count()).select_from(CatalogItem).where(before))
        missing = await s.scalar(select(func.count()).select_from(CatalogItem).where(before, _unnamed(feed)))
    c = feed.counts
    return FeedTally(rows=c.get("rows", 0), valid=c.get("valid", 0), invalid=c.get("invalid", 0),
                     catalog=catalog or 0, would_remove=missing or 0)


def _unnamed(feed: Feed):  # noqa: ANN202 - a SQL condition
    return ~exists().where(TxItem.trans_id == feed.trans_id, TxItem.im_name == CatalogItem.im_name)


async def apply_chunk(deps: IngestDeps, feed: Feed, after: str) -> str | None:
    """Apply the staged rows after `after` (by name); the last name applied, or None when done."""
    # Catalog and `pending` first, events after: a crash in between is repaired on start by
    # `replay_pending`, as the rows are pending by then.
    app_id, trans_id = feed.app_id, feed.trans_id
    async with deps.store.db() as s, s.begin():
        # Plain rows and unsynchronised updates: ORM objects cost several times more at this volume.
        rows = (await s.execute(select(TxItem.im_name, TxItem.op, TxItem.im_url, TxItem.fields).where(
            TxItem.trans_id == trans_id, TxItem.state == STAGED, TxItem.im_name > after)
            .order_by(TxItem.im_name).limit(CHUNK))).all()
        if not rows:
            return None
        names = [r.im_name for r in rows]
        await s.execute(update(TxItem).where(TxItem.trans_id == trans_id, TxItem.im_name.in_(names),
                                             TxItem.state == STAGED).values(state="pending")
                        .execution_options(synchronize_session=False))
        await _catalog(s, app_id, trans_id, [r.im_name for r in rows if r.op != ItemOp.REMOVE.value],
                       [r.im_name for r in rows if r.op == ItemOp.REMOVE.value])
    for r in rows:
        await deps.bus.publish(ItemAccepted(app_id=app_id, trans_id=trans_id, im_name=r.im_name,
                                            op=ItemOp(r.op), im_url=r.im_url, fields=r.fields or {}))
    return names[-1]


async def _catalog(s, app_id: str, trans_id: int, upserts: list[str], removes: list[str]) -> None:  # noqa: ANN001
    """Catalog membership as `IngestStore.open_transaction` keeps it, in bulk."""
    if upserts:
        listed = set(await s.scalars(select(CatalogItem.im_name).where(
            CatalogItem.app_id == app_id, CatalogItem.im_name.in_(upserts))))
        if listed:
            await s.execute(update(CatalogItem).where(CatalogItem.app_id == app_id, CatalogItem.im_name.in_(listed))
                            .values(last_trans_id=trans_id).execution_options(synchronize_session=False))
        new = [{"app_id": app_id, "im_name": n, "indexed": False, "last_trans_id": trans_id, "updated_at": utcnow()}
               for n in upserts if n not in listed]
        if new:
            await s.execute(insert(CatalogItem), new)
    if removes:
        await s.execute(delete(CatalogItem).where(CatalogItem.app_id == app_id, CatalogItem.im_name.in_(removes))
                        .execution_options(synchronize_session=False))


async def remove_chunk(deps: IngestDeps, feed: Feed, after: str) -> str | None:
    """Remove the next items after `after` the FULL feed does not name; the last one, or None when done."""
    # Only items last touched before the feed began: an item the Data API adds meanwhile stays.
    app_id, trans_id = feed.app_id, feed.trans_id
    async with deps.store.db() as s, s.begin():
        names = list(await s.scalars(select(CatalogItem.im_name).where(
            CatalogItem.app_id == app_id, CatalogItem.im_name > after, CatalogItem.last_trans_id < trans_id,
            _unnamed(feed)).order_by(CatalogItem.im_name).limit(CHUNK)))
        if not names:
            return None
        counts = dict(feed.counts)
        seq = counts.get("rows", 0) + counts.get("removed", 0) + 1
        await s.execute(insert(TxItem), [
            {"trans_id": trans_id, "im_name": n, "seq": seq + i, "app_id": app_id, "op": ItemOp.REMOVE.value,
             "state": "pending", "im_url": None, "fields": {}, "warnings": []} for i, n in enumerate(names)])
        await _catalog(s, app_id, trans_id, [], names)
        counts["removed"] = counts.get("removed", 0) + len(names)
        moved = await s.execute(update(Feed).where(Feed.feed_id == feed.feed_id, Feed.state == REMOVING)
                                .values(counts=counts, updated_at=utcnow()))
        if moved.rowcount != 1:
            raise Superseded()
        await s.execute(update(Transaction).where(Transaction.trans_id == trans_id)
                        .values(total=Transaction.total + len(names), updated_at=utcnow()))
    feed.counts = counts
    for n in names:
        await deps.bus.publish(ItemAccepted(app_id=app_id, trans_id=trans_id, im_name=n, op=ItemOp.REMOVE))
    return names[-1]


async def pending_count(deps: IngestDeps, trans_id: int) -> int:
    """Items of the transaction still waiting for their outcome."""
    async with deps.store.db() as s:
        return await s.scalar(select(func.count()).select_from(TxItem).where(
            TxItem.state == "pending", TxItem.trans_id == trans_id)) or 0


async def wait_indexed(deps: FeedDeps, trans_id: int) -> None:
    """Return once every published item of the transaction has its outcome."""
    while await pending_count(deps.ingest, trans_id):
        await asyncio.sleep(deps.poll_s)


async def conclude(deps: FeedDeps, feed: Feed, state: str, error: str | None, *,
                   fatal_line: int | None = None) -> None:
    """Finish an active feed in `state`; rows still staged are failed as not applied."""
    now = utcnow()
    async with deps.ingest.store.db() as s, s.begin():
        moved = await s.execute(update(Feed).where(Feed.feed_id == feed.feed_id, Feed.state.in_(ACTIVE))
                                .values(state=state, error=error[:2000] if error else None, updated_at=now))
        if moved.rowcount != 1:
            raise Superseded()
        if feed.trans_id is None:
            return
        extra = 0
        if state in (FAILED, REFUSED):
            await s.execute(update(TxItem).where(TxItem.trans_id == feed.trans_id, TxItem.state == STAGED).values(
                state="failed", error_code=NOT_APPLIED, error_message=f"Not applied: {error}"[:1000]))
        if state == FAILED:  # the error about the file itself, as its own failed item
            extra = 1
            s.add(TxItem(trans_id=feed.trans_id, im_name=FILE_KEY, seq=fatal_line or 0, app_id=feed.app_id,
                         op=ItemOp.UPSERT.value, state="failed", error_code=NOT_APPLIED,
                         error_message=(error or "")[:1000], warnings=[], fields={}))
        # The file itself is read: its count goes, replaced by its own error item if any.
        await s.execute(update(Transaction).where(Transaction.trans_id == feed.trans_id)
                        .values(total=Transaction.total - 1 + extra, updated_at=now))


async def force(deps: FeedDeps, app_id: str, feed_id: str) -> Feed:
    """Process a refused FULL feed again without the safety guard (a new transaction)."""
    from magpie.ingestion.store import new_trans_id

    feed = await load(deps, feed_id)
    if feed.app_id != app_id:
        raise NotFound(f"No feed {feed_id}.")
    if feed.state != REFUSED:
        raise Conflict(f"Feed {feed_id} is {feed.state}; only a refused feed can be forced.")
    source, target = file_of(deps, feed), deps.root / app_id / "processing" / Path(feed.path).name
    if not source.is_file():
        raise NotFound(f"The file of feed {feed_id} is gone from /failed.")
    trans_id, now = new_trans_id(), utcnow()
    async with deps.ingest.store.db() as s, s.begin():
        moved = await s.execute(update(Feed).where(Feed.feed_id == feed_id, Feed.state == REFUSED).values(
            state=QUEUED, force=True, trans_id=trans_id, rows_read=0, counts={}, error=None, result_path=None,
            path=str(target.relative_to(deps.root / app_id)), updated_at=now))
        if moved.rowcount != 1:
            raise Conflict(f"Feed {feed_id} changed meanwhile.")
        s.add(Transaction(trans_id=trans_id, app_id=app_id, source="sftp", total=1, created_at=now, updated_at=now))
    os.replace(source, target)
    if feed.result_path:
        (deps.root / app_id / feed.result_path).unlink(missing_ok=True)
    return await load(deps, feed_id)


async def list_feeds(deps: IngestDeps, app_id: str, limit: int = 50) -> list[Feed]:
    """The application's latest feeds, newest first."""
    async with deps.store.db() as s:
        return list(await s.scalars(select(Feed).where(Feed.app_id == app_id)
                                    .order_by(Feed.created_at.desc(), Feed.feed_id.desc()).limit(limit)))
