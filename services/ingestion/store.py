"""The ingestion work log: transactions, per-item outcomes, catalog membership (SQL)."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from magpie.common.controlplane.tables import utcnow
from magpie.common.errors import TransactionNotFound
from magpie.common.events.ingest import ItemAccepted, ItemOp, ItemStatus
from magpie.ingestion.tables import CatalogItem, IngestBase, Transaction, TxItem

log = logging.getLogger(__name__)


def new_trans_id() -> int:
    """Milliseconds since the epoch in the high bits, randomness below: unique and sortable."""
    return (int(time.time() * 1000) << 20) | secrets.randbits(20)


@dataclass
class TransactionStatus:
    trans_id: int
    app_id: str
    total: int
    success_count: int
    fail_count: int
    start_time: datetime
    update_time: datetime
    errors: list[TxItem]

    @property
    def processed_percent(self) -> int:
        """Share of items with a final outcome, rounded down so 100 means all done."""
        if self.total == 0:
            return 100
        return (self.success_count + self.fail_count) * 100 // self.total


async def create_tables(engine: AsyncEngine) -> None:
    """Create the ingestion tables that do not exist yet."""
    async with engine.begin() as conn:
        await conn.run_sync(IngestBase.metadata.create_all)


class IngestStore:
    """Transactions and item outcomes; every write is idempotent.

    Final statuses are written in groups: `record` queues its status and waits for the
    transaction that carries it (at most one every `status_window_s`; the first after a
    quiet spell goes at once), so an ingest pays one commit per group, not per item, and a
    status is acknowledged only once it is committed.
    """

    def __init__(self, db: async_sessionmaker, status_window_s: float = 0.05,
                 status_batch: int = 500) -> None:
        self.db = db
        self.status_window_s = status_window_s
        self.status_batch = status_batch
        self._statuses: list[tuple[ItemStatus, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush = float("-inf")
        self.flushes = 0  # transactions written by the group writer (tests, metrics)

    async def existing(self, app_id: str, names: Sequence[str]) -> set[str]:
        """Which of `names` the catalog holds or is ingesting."""
        if not names:
            return set()
        async with self.db() as s:
            rows = await s.scalars(select(CatalogItem.im_name).where(
                CatalogItem.app_id == app_id, CatalogItem.im_name.in_(list(set(names)))))
            return set(rows)

    async def open_transaction(self, app_id: str, source: str, events: Sequence[ItemAccepted],
                               trans_id: int) -> None:
        """Record a transaction and its pending items before any event is published."""
        now = utcnow()
        async with self.db() as s, s.begin():
            s.add(Transaction(trans_id=trans_id, app_id=app_id, source=source, total=len(events),
                              created_at=now, updated_at=now))
            names = [e.im_name for e in events]
            known = {}
            if names:
                rows = await s.scalars(select(CatalogItem).where(
                    CatalogItem.app_id == app_id, CatalogItem.im_name.in_(names)))
                known = {r.im_name: r for r in rows}
            for seq, e in enumerate(events):
                s.add(TxItem(trans_id=trans_id, im_name=e.im_name, seq=seq, app_id=app_id, op=e.op.value,
                             im_url=e.im_url, fields=e.fields, warnings=[]))
                row = known.get(e.im_name)
                if e.op is ItemOp.REMOVE:
                    if row is not None:
                        await s.delete(row)
                elif row is None:
                    s.add(CatalogItem(app_id=app_id, im_name=e.im_name, indexed=False, last_trans_id=trans_id))
                else:
                    row.last_trans_id = trans_id

    async def record(self, st: ItemStatus) -> bool:
        """Apply an item's final status once; False if it was already applied."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._statuses.append((st, future))
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush_statuses(), name="ingest-status-writer")
        return await future

    async def _flush_statuses(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[ItemStatus, asyncio.Future[bool]]] = []
        try:
            while self._statuses:
                wait = self._last_flush + self.status_window_s - loop.time()
                if wait > 0 and len(self._statuses) < self.status_batch:
                    await asyncio.sleep(wait)  # let the group grow
                batch = self._statuses[:self.status_batch]
                del self._statuses[:len(batch)]
                self._last_flush = loop.time()
                await self._write_group(batch)
                batch = []
        except BaseException:
            # Cancelled with the loop: the callers' statuses are not written, and their
            # events are redelivered, as for a crash.
            for _, future in batch + self._statuses:
                future.cancel()
            self._statuses.clear()
            raise

    async def _write_group(self, batch: list[tuple[ItemStatus, asyncio.Future[bool]]]) -> None:
        try:
            results = await self.record_many([st for st, _ in batch])
        except Exception as exc:  # noqa: BLE001 - reported to each caller below
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            # One bad status must not fail the others: write them one by one.
            log.warning("status group of %d failed (%s); writing them one by one", len(batch), exc)
            for st, future in batch:
                try:
                    _settle(future, (await self.record_many([st]))[0])
                except Exception as single_exc:  # noqa: BLE001
                    _settle(future, exc=single_exc)
            return
        for (_, future), applied in zip(batch, results, strict=True):
            _settle(future, applied)

    async def record_many(self, statuses: Sequence[ItemStatus]) -> list[bool]:
        """Apply final statuses in one transaction, in order; for each, whether it was new."""
        applied: list[bool] = []
        touched: set[int] = set()
        async with self.db() as s, s.begin():
            # Held here: the session's identity map keeps rows only while someone refers to them.
            rows = await self._load_catalog_rows(s, statuses)  # noqa: F841
            for st in statuses:
                result = await s.execute(
                    update(TxItem)
                    .where(TxItem.trans_id == st.trans_id, TxItem.im_name == st.im_name,
                           TxItem.state == "pending")
                    .values(state="ok" if st.ok else "failed", error_code=st.error_code,
                            error_message=st.error_message, warnings=st.warnings)
                )
                if result.rowcount == 0:
                    applied.append(False)
                    continue
                touched.add(st.trans_id)
                if st.op is ItemOp.UPSERT:
                    item = await s.get(CatalogItem, (st.app_id, st.im_name))
                    if item is not None and st.ok:
                        item.indexed = True
                    elif item is not None and not item.indexed and item.last_trans_id == st.trans_id:
                        # A new item whose first image failed never entered the catalog.
                        await s.delete(item)
                applied.append(True)
            if touched:
                await s.execute(update(Transaction).where(Transaction.trans_id.in_(touched))
                                .values(updated_at=utcnow()))
        self.flushes += 1
        return applied

    @staticmethod
    async def _load_catalog_rows(s, statuses: Sequence[ItemStatus]) -> list[CatalogItem]:  # noqa: ANN001
        # One query per application puts the rows in the session, so `s.get` needs none.
        by_app: dict[str, set[str]] = {}
        for st in statuses:
            if st.op is ItemOp.UPSERT:
                by_app.setdefault(st.app_id, set()).add(st.im_name)
        rows: list[CatalogItem] = []
        for app_id, names in by_app.items():
            rows.extend((await s.scalars(select(CatalogItem).where(
                CatalogItem.app_id == app_id, CatalogItem.im_name.in_(list(names))))).all())
        return rows

    async def status(self, app_id: str, trans_id: int, error_page: int = 1,
                     error_limit: int = 10) -> TransactionStatus:
        """Counts and one page of errors of a transaction of `app_id`."""
        async with self.db() as s:
            tx = await s.get(Transaction, trans_id)
            if tx is None or tx.app_id != app_id:
                raise TransactionNotFound()
            counts = dict((await s.execute(
                select(TxItem.state, func.count()).where(TxItem.trans_id == trans_id).group_by(TxItem.state)
            )).all())
            errors = (await s.scalars(
                select(TxItem).where(TxItem.trans_id == trans_id, TxItem.state == "failed")
                .order_by(TxItem.seq).offset((error_page - 1) * error_limit).limit(error_limit)
            )).all()
            return TransactionStatus(trans_id=trans_id, app_id=app_id, total=tx.total,
                                     success_count=counts.get("ok", 0), fail_count=counts.get("failed", 0),
                                     start_time=tx.created_at, update_time=tx.updated_at, errors=list(errors))

    async def pending(self, limit: int = 10_000) -> list[ItemAccepted]:
        """Items still waiting for an outcome, oldest transaction first (crash recovery)."""
        async with self.db() as s:
            rows = (await s.scalars(
                select(TxItem).where(TxItem.state == "pending").order_by(TxItem.trans_id, TxItem.seq).limit(limit)
            )).all()
        return [ItemAccepted(app_id=r.app_id, trans_id=r.trans_id, im_name=r.im_name, op=ItemOp(r.op),
                             im_url=r.im_url, fields=r.fields or {}) for r in rows]

    async def list_transactions(self, app_id: str, limit: int = 50) -> list[Transaction]:
        """The application's latest transactions."""
        async with self.db() as s:
            rows = await s.scalars(select(Transaction).where(Transaction.app_id == app_id)
                                   .order_by(Transaction.trans_id.desc()).limit(limit))
            return list(rows)

    async def catalog_names(self, app_id: str) -> list[str]:
        """Every im_name the catalog holds (used by FULL feeds to find what to remove)."""
        async with self.db() as s:
            return list(await s.scalars(select(CatalogItem.im_name).where(CatalogItem.app_id == app_id)))

    async def drop_app(self, app_id: str) -> None:
        """Forget everything about a deleted application."""
        async with self.db() as s, s.begin():
            for table in (TxItem, Transaction, CatalogItem):
                await s.execute(delete(table).where(table.app_id == app_id))


def _settle(future: asyncio.Future[bool], result: bool = False, exc: BaseException | None = None) -> None:
    if future.done():  # the caller gave up (cancelled); the write stands, being idempotent
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
