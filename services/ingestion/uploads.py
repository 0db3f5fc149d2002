"""CSV upload: keep the file, propose a schema when the app has none, ingest it as ONE transaction.

`receive` streams the file to a working copy on local disk (checking size and UTF-8 as it
goes), reads the header and a sample, then waits for `confirm` (the app has no schema fields
and the file has columns besides im_name/im_url) or starts processing at once.

Processing reads CHUNK rows at a time; one database transaction per chunk adds its TxItems
(pending, or failed with the CSV line in the message), grows the upload's Transaction and
advances `rows_read`; then its events are published. So a crash loses no row: on start
`replay_pending` republishes recorded items without an outcome and `resume` re-reads the file
past `rows_read`. While the file is read the Transaction's total is one more than the rows
recorded, so `processed_percent` cannot reach 100 early.

Storage: `ObjectStore.put` takes bytes, so only files up to OBJECT_COPY_MAX are copied to
`<app_id>/uploads/<id>.csv`; a larger one lives only as the working copy under
`<data_dir>/uploads/<app_id>/<id>.csv` (resuming it needs that disk), which is otherwise
deleted once processed. Within a file the first row of an im_name wins; later rows of the name
fail (107) naming the first line. Failed rows without a usable im_name are keyed `<line N>`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import JSON, BigInteger, Integer, String, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from magpie.common.controlplane.schema_rules import MAX_IM_NAME_LEN, Field
from magpie.common.controlplane.tables import Application, UTCDateTime, utcnow
from magpie.common.errors import Conflict, InvalidImageName, LimitExceeded, MagpieError, NotFound
from magpie.common.events.ingest import ItemAccepted, ItemOp
from magpie.common.ports import ObjectStore
from magpie.ingestion import csv_feed
from magpie.ingestion.csv_feed import CsvFormatError, CsvRow
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.store import new_trans_id
from magpie.ingestion.tables import CatalogItem, IngestBase, Transaction, TxItem
from magpie.ingestion.validation import validate_item

log = logging.getLogger(__name__)

CHUNK = 500
MAX_UPLOAD_BYTES = 500 * 1024 * 1024  # the seed's limit for a dashboard CSV
OBJECT_COPY_MAX = 32 * 1024 * 1024  # read into memory once to `put` it
READ_SIZE = 1 << 20
MAX_ATTEMPTS, RETRY_BACKOFF_S = 3, 1.0  # tries of one run before the upload is failed
NEEDS_CONFIRMATION, PROCESSING, DONE, FAILED = "needs_confirmation", "processing", "done", "failed"
_RUNNING: dict[str, asyncio.Task[None]] = {}


class UploadTooLarge(LimitExceeded):
    code, message, http_status = 413, "The file is larger than the 500 MB a CSV upload may have.", 413


class Upload(IngestBase):
    """One uploaded CSV file and how far its processing got."""

    __tablename__ = "ingest_uploads"

    upload_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(24))
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # fields, problems
    ignored: Mapped[list[str]] = mapped_column(JSON, default=list)  # columns no field takes
    trans_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)  # rows recorded: resume skips them
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@dataclass
class UploadDeps:
    """What the upload use cases need; `db` is the control plane (applications, schemas)."""

    ingest: IngestDeps
    db: async_sessionmaker
    objects: ObjectStore
    work_dir: Path  # <data_dir>/uploads


class AsyncReader(Protocol):
    async def read(self, size: int = -1) -> bytes: ...  # e.g. Starlette's UploadFile


class _Superseded(Exception):  # another worker recorded this chunk first
    pass


# --- receive and confirm ----------------------------------------------------------------------
async def receive(deps: UploadDeps, app_id: str, filename: str, source: AsyncReader, *,
                  max_bytes: int = MAX_UPLOAD_BYTES) -> Upload:
    """Store an uploaded CSV, then start it, or leave it needing confirmation of a proposed schema."""
    schema = await deps.ingest.schemas.get(app_id)
    upload_id = "up" + secrets.token_hex(10)
    path = _local_path(deps, app_id, upload_id)
    key = None
    try:
        size = await _spool(source, path, max_bytes)
        columns, fields, problems = await asyncio.to_thread(_inspect, path)
        if size <= OBJECT_COPY_MAX:
            key = f"{app_id}/uploads/{upload_id}.csv"
            await deps.objects.put(key, await asyncio.to_thread(path.read_bytes), "text/csv")
        custom = csv_feed.custom_columns(columns)
        needs = not schema.fields and bool(custom)
        now = utcnow()
        up = Upload(upload_id=upload_id, app_id=app_id, filename=(filename or "")[:255], size_bytes=size,
                    object_key=key, columns=columns, rows_read=0, created_at=now, updated_at=now,
                    state=NEEDS_CONFIRMATION if needs else PROCESSING,
                    proposal={"fields": [asdict(f) for f in fields], "problems": problems} if needs else None,
                    ignored=[] if needs else [c for c in custom if schema.field(c) is None])
        async with deps.ingest.store.db() as s, s.begin():
            s.add(up)
            if not needs:
                up.trans_id = _open_transaction(s, up)
    except BaseException:
        path.unlink(missing_ok=True)
        if key is not None:
            await deps.objects.delete(key)
        raise
    if not needs:
        start(deps, upload_id)
    return up


async def confirm(deps: UploadDeps, app_id: str, upload_id: str, fields: list[Any]) -> Upload:
    """Set the schema the client confirmed (FieldIn-like items), then process the upload."""
    from magpie.gateway.controlplane.schema import set_schema  # the one schema write path

    up = await get(deps, app_id, upload_id)
    if up.state != NEEDS_CONFIRMATION:
        raise Conflict(f"Upload {upload_id} is {up.state}: there is nothing to confirm.")
    async with deps.db() as s:
        account_id = await s.scalar(select(Application.account_id).where(Application.id == app_id))
    if account_id is None:
        raise NotFound(f"No application {app_id}.")
    current = (await deps.ingest.schemas.get(app_id)).fields
    wanted = [Field(f.name, f.type, f.searchable) for f in fields]
    if current and list(current) != wanted:
        # Replacing a schema set meanwhile would delete the data of the fields it drops.
        raise Conflict("The application got a schema after this upload was received; change it "
                       "in the schema settings, or confirm exactly that schema.")
    await set_schema(deps.db, account_id, app_id, fields)
    names = {f.name for f in wanted}
    async with deps.ingest.store.db() as s, s.begin():
        up.trans_id = new_trans_id()
        moved = await s.execute(update(Upload).where(Upload.upload_id == upload_id,
                                                     Upload.state == NEEDS_CONFIRMATION)
                                .values(state=PROCESSING, trans_id=up.trans_id, updated_at=utcnow(),
                                        ignored=[c for c in csv_feed.custom_columns(up.columns)
                                                 if c not in names]))
        if moved.rowcount != 1:
            raise Conflict(f"Upload {upload_id} was confirmed already.")
        _open_transaction(s, up)
    start(deps, upload_id)
    return await get(deps, app_id, upload_id)


async def get(deps: UploadDeps, app_id: str, upload_id: str) -> Upload:
    """The application's upload; another application's id is NotFound."""
    async with deps.ingest.store.db() as s:
        up = await s.get(Upload, upload_id)
    if up is None or up.app_id != app_id:
        raise NotFound(f"No upload {upload_id}.")
    return up


def _open_transaction(s: AsyncSession, up: Upload) -> int:
    trans_id = up.trans_id or new_trans_id()
    now = utcnow()
    # total 1: "the file itself", until the last row is recorded (see the module's docstring).
    s.add(Transaction(trans_id=trans_id, app_id=up.app_id, source="csv", total=1, created_at=now,
                      updated_at=now))
    return trans_id


def _local_path(deps: UploadDeps, app_id: str, upload_id: str) -> Path:
    return deps.work_dir / app_id / f"{upload_id}.csv"


async def _spool(source: AsyncReader, path: Path, max_bytes: int) -> int:
    """Copy `source` to `path` a megabyte at a time, refusing it when too large or not UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    decoder, size = csv_feed.Utf8Decoder(), 0
    with await asyncio.to_thread(open, path, "xb") as out:
        while data := await source.read(READ_SIZE):
            size += len(data)
            if size > max_bytes:
                raise UploadTooLarge(f"The file is larger than {max_bytes} bytes.")
            decoder.feed(data)  # fail fast: no row is ingested from a file that is not UTF-8
            await asyncio.to_thread(out.write, data)
        decoder.feed(b"", final=True)
        out.flush()
        await asyncio.to_thread(os.fsync, out.fileno())  # a resume after power loss needs it whole
    return size


def _inspect(path: Path) -> tuple[list[str], list[Field], list[dict[str, str]]]:
    with open(path, "rb") as f:
        feed = csv_feed.open_feed(f)
        fields = csv_feed.infer_schema(islice(feed, csv_feed.SAMPLE_ROWS), feed.header)
        return feed.header, fields, csv_feed.column_problems(feed.header)


# --- processing -----------------------------------------------------------------------------
def start(deps: UploadDeps, upload_id: str) -> asyncio.Task[None]:
    """Process the upload in a background task (one per upload in this process)."""
    task = _RUNNING.get(upload_id)
    if task is None or task.done():
        task = asyncio.create_task(_run(deps, upload_id), name=f"csv-upload-{upload_id}")
        _RUNNING[upload_id] = task
        task.add_done_callback(lambda t: _RUNNING.pop(upload_id) if _RUNNING.get(upload_id) is t else None)
    return task


async def resume(deps: UploadDeps) -> int:
    """Restart every upload a stop or crash left processing; returns how many."""
    async with deps.ingest.store.db() as s:
        ids = list(await s.scalars(select(Upload.upload_id).where(Upload.state == PROCESSING)))
    for upload_id in ids:
        start(deps, upload_id)
    return len(ids)


async def settle(upload_id: str | None = None) -> None:
    """Wait until this process is done reading the upload (or all uploads)."""
    tasks = [t for k, t in list(_RUNNING.items()) if upload_id in (None, k)]
    await asyncio.gather(*tasks, return_exceptions=True)


async def stop() -> None:
    """Cancel the running uploads; each resumes from its last recorded chunk on the next start."""
    tasks = list(_RUNNING.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _run(deps: UploadDeps, upload_id: str) -> None:
    transient, error = False, ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            await process(deps, upload_id)
            return
        except _Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - CancelledError passes: a stop leaves it processing
            log.exception("CSV upload %s failed (attempt %d of %d)", upload_id, attempt, MAX_ATTEMPTS)
            transient = isinstance(exc, MagpieError) and exc.retryable
            error = exc.detail if isinstance(exc, MagpieError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, MagpieError) and not exc.retryable:
                break
            await asyncio.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
    if transient:
        return  # a dependency is down (or stopping): left processing, the next start resumes it
    try:
        await _finish(deps, upload_id, FAILED, f"Processing stopped: {error}")
    except Exception:  # noqa: BLE001 - left processing: the next start resumes it
        log.exception("could not mark CSV upload %s failed", upload_id)


async def process(deps: UploadDeps, upload_id: str) -> None:
    """Read the upload from its first unrecorded row to the end, a chunk at a time."""
    async with deps.ingest.store.db() as s:
        up = await s.get(Upload, upload_id)
    if up is None or up.state != PROCESSING:
        return
    path = await _working_copy(deps, up)
    done, fatal = up.rows_read, None
    with await asyncio.to_thread(open, path, "rb") as f:
        try:
            rows = iter(await asyncio.to_thread(csv_feed.open_feed, f))
            await asyncio.to_thread(lambda: sum(1 for _ in islice(rows, done)))
        except CsvFormatError as err:  # the file changed since it was checked
            rows, fatal = iter(()), err
        while fatal is None:
            chunk, fatal = await asyncio.to_thread(csv_feed.take, rows, CHUNK)
            if fatal is not None:  # recorded as the file's last, failed row
                chunk.append(CsvRow(fatal.line or (chunk[-1].line + 1 if chunk else 0), {}, fatal))
            if chunk:
                events = await _record_chunk(deps, up, done, chunk)
                done += len(chunk)
                for event in events:
                    await deps.ingest.bus.publish(event)
            if len(chunk) < CHUNK:
                break
    await _finish(deps, upload_id, FAILED if fatal else DONE, fatal.detail if fatal else None)


async def _working_copy(deps: UploadDeps, up: Upload) -> Path:
    path = _local_path(deps, up.app_id, up.upload_id)
    if path.is_file():
        return path
    if up.object_key is None:  # too large for the object store, and not on this disk
        raise NotFound(f"The file of upload {up.upload_id} is not on this host.")
    data = await deps.objects.get(up.object_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    await asyncio.to_thread(tmp.write_bytes, data)
    os.replace(tmp, path)
    return path


async def _record_chunk(deps: UploadDeps, up: Upload, done: int, rows: list[CsvRow]) -> list[ItemAccepted]:
    """Record a chunk in the upload's transaction with the upload's progress, atomically: a local
    generalisation of `service.insert` + `IngestStore.open_transaction` to a growing transaction."""
    app_id, trans_id = up.app_id, up.trans_id
    fields = list((await deps.ingest.schemas.get(app_id)).fields)
    names = [n for r in rows if r.error is None and isinstance(n := r.values.get("im_name"), str)]
    known = await deps.ingest.store.existing(app_id, names)
    checked = []
    for row in rows:
        err, item = row.error, None
        if err is None:
            try:
                item = validate_item(row.line, row.values, fields, exists=row.values.get("im_name") in known)
            except MagpieError as exc:
                err = exc
        checked.append((row, item, err))
    now = utcnow()
    async with deps.ingest.store.db() as s, s.begin():
        moved = await s.execute(update(Upload).where(
            Upload.upload_id == up.upload_id, Upload.state == PROCESSING, Upload.rows_read == done)
            .values(rows_read=done + len(rows), updated_at=now))
        if moved.rowcount != 1:
            raise _Superseded()
        keys = set(names) | {f"<line {r.line}>" for r in rows}
        taken: dict[str, int] = dict((await s.execute(select(TxItem.im_name, TxItem.seq).where(
            TxItem.trans_id == trans_id, TxItem.im_name.in_(keys)))).all())
        items, events = _assign(checked, taken, app_id, trans_id)
        # Core bulk statements: ORM objects cost ~5x more per row at this volume.
        await s.execute(insert(TxItem), items)
        accepted = [e.im_name for e in events]
        listed = set(await s.scalars(select(CatalogItem.im_name).where(
            CatalogItem.app_id == app_id, CatalogItem.im_name.in_(accepted)))) if accepted else set()
        if listed:
            await s.execute(update(CatalogItem).where(CatalogItem.app_id == app_id, CatalogItem.im_name.in_(listed))
                            .values(last_trans_id=trans_id))
        if len(listed) < len(accepted):
            await s.execute(insert(CatalogItem), [
                {"app_id": app_id, "im_name": n, "indexed": False, "last_trans_id": trans_id, "updated_at": now}
                for n in accepted if n not in listed])
        await s.execute(update(Transaction).where(Transaction.trans_id == trans_id)
                        .values(total=Transaction.total + len(rows), updated_at=now))
    return events


def _assign(checked: list[tuple[CsvRow, Any, MagpieError | None]], taken: dict[str, int], app_id: str,
            trans_id: int) -> tuple[list[dict[str, Any]], list[ItemAccepted]]:
    """TxItem rows and events of a chunk; `taken` (key -> line) holds the transaction's keys so far."""
    items, events = [], []
    for row, item, err in checked:
        name = row.values.get("im_name")
        usable = isinstance(name, str) and bool(name.strip()) and len(name) <= MAX_IM_NAME_LEN
        if usable and name in taken:
            item, err = None, InvalidImageName(f"im_name {name!r} repeats line {taken[name]}; only "
                                               "the first row of a name is used.")
        key = name if usable and name not in taken else f"<line {row.line}>"
        if key in taken:  # a real im_name that looks like our placeholder came first
            key = f"<line {row.line} {secrets.token_hex(4)}>"
        taken[key] = row.line
        # The parser's messages name their line already.
        msg = "" if err is None else err.detail if isinstance(err, CsvFormatError) else f"Line {row.line}: {err.detail}"
        op = ItemOp.UPSERT if item is None or item.im_url else ItemOp.METADATA
        items.append({"trans_id": trans_id, "im_name": key, "seq": row.line, "app_id": app_id, "op": op.value,
                      "state": "pending" if item else "failed", "im_url": item.im_url if item else None,
                      "fields": item.fields if item else {}, "warnings": [],
                      "error_code": None if item else err.code,
                      "error_message": None if item else msg[:1000]})
        if item is not None:
            events.append(ItemAccepted(app_id=app_id, trans_id=trans_id, im_name=key, op=op,
                                       im_url=item.im_url, fields=item.fields))
    return items, events


async def _finish(deps: UploadDeps, upload_id: str, state: str, error: str | None) -> None:
    now = utcnow()
    async with deps.ingest.store.db() as s, s.begin():
        up = await s.get(Upload, upload_id)
        moved = await s.execute(update(Upload).where(Upload.upload_id == upload_id, Upload.state == PROCESSING)
                                .values(state=state, error=error[:1000] if error else None, updated_at=now))
        if up is None or moved.rowcount != 1:
            return
        await s.execute(update(Transaction).where(Transaction.trans_id == up.trans_id)
                        .values(total=Transaction.total - 1, updated_at=now))  # the file is read
    if up.object_key is not None:
        _local_path(deps, up.app_id, upload_id).unlink(missing_ok=True)
