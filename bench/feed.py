"""A FULL SFTP feed of metadata-only updates of an indexed catalog: rows/s and peak memory.

    python bench/feed.py [--rows 100000] [--sizes 100000,400000]

For each size, in a fresh child process (so peak RSS is its own):
  parse+validate  the `.csv.gz` streamed through csv_feed and validate_item, nothing stored;
  feed            the whole feed over SQLite: claim (sha256), staging (parse, validate, record
                  each chunk), the guard's tally, apply (catalog + one event per row to a bus
                  that drops them), the removal scan, the result file. Item outcomes are marked
                  in bulk instead of by a pipeline: the pipeline's own cost is not the feed's.
The catalog is seeded as `--rows` indexed items; the feed updates `brand`, `price`, `title`
of every one of them (no im_url: metadata only), so the guard passes and nothing is removed.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BRANDS = ["Nike", "Puma", "Adidas", "Acme", "Zara", "Uniqlo"]


def write_feed(path: Path, rows: int) -> None:
    """A gzip CSV of metadata-only rows for item-0 .. item-(rows-1)."""
    with gzip.open(path, "wt", newline="", encoding="utf-8", compresslevel=6) as f:
        w = csv.writer(f)
        w.writerow(["im_name", "brand", "price", "title"])
        for i in range(rows):
            w.writerow([f"item-{i}", BRANDS[i % 6], f"{i % 997}.{i % 100:02d}", f"Product title {i} é"])


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_validate(path: Path) -> None:
    """Child: stream-parse and validate every row."""
    from magpie.common.controlplane.schema_rules import Field
    from magpie.ingestion.csv_feed import open_feed
    from magpie.ingestion.validation import validate_item

    fields = [Field("brand", "string", True), Field("price", "float", True), Field("title", "text", False)]
    base = peak_mib()
    start, rows = time.perf_counter(), 0
    with open(path, "rb") as f:
        for row in open_feed(f, gzip=True):
            validate_item(row.line, row.values, fields, exists=True)
            rows += 1
    s = time.perf_counter() - start
    print(f"  parse+validate  {rows:>9,} rows  {s:6.2f} s  {rows / s:>9,.0f} rows/s  "
          f"peak RSS {peak_mib():6.1f} MiB (after imports {base:.1f})")


async def _feed(path: Path, rows: int, work: Path) -> None:
    from sqlalchemy import insert, update

    from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.gateway.api.schemas import AppIn, FieldIn
    from magpie.gateway.controlplane import apps, members, schema
    from magpie.ingestion.service import IngestDeps
    from magpie.ingestion.sftp import feed as feeds
    from magpie.ingestion.sftp.runner import Runner
    from magpie.ingestion.sftp.tables import create_tables as sftp_tables
    from magpie.ingestion.sftp.watcher import Watcher
    from magpie.ingestion.store import IngestStore, create_tables
    from magpie.ingestion.tables import CatalogItem, TxItem

    class NullBus:
        events = 0

        async def publish(self, event, *, key=None):  # noqa: ANN001
            NullBus.events += 1

    engine = make_engine(f"sqlite+aiosqlite:///{work / 'c.sqlite3'}")
    await create_schema(engine)
    await create_tables(engine)
    await sftp_tables(engine)
    db = make_sessionmaker(engine)
    await members.ensure_initial_owner(db, "o@example.com", "password123")
    app = await apps.create_app(db, 1, AppIn(name="Bench"))
    await schema.set_schema(db, 1, app.app_id, [FieldIn(name="brand", type="string", searchable=True),
                                                 FieldIn(name="price", type="float", searchable=True),
                                                 FieldIn(name="title", type="text")])
    async with db() as s, s.begin():
        for lo in range(0, rows, 10_000):
            await s.execute(insert(CatalogItem), [{"app_id": app.app_id, "im_name": f"item-{i}", "indexed": True,
                                                   "last_trans_id": 1} for i in range(lo, min(rows, lo + 10_000))])
    ingest = IngestDeps(store=IngestStore(db), bus=NullBus(), schemas=SchemaProvider(db))
    deps = feeds.FeedDeps(ingest=ingest, root=work / "sftp")
    timings: dict[str, float] = {}
    for state, step in list(feeds._STEPS.items()):
        async def timed(d, f, _step=step, _state=state):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            await _step(d, f)
            timings[_state] = timings.get(_state, 0) + time.perf_counter() - t
        feeds._STEPS[state] = timed

    async def all_ok(d, trans_id):  # noqa: ANN001, ANN202 - outcomes in bulk (see the docstring)
        async with d.ingest.store.db() as s, s.begin():
            await s.execute(update(TxItem).where(TxItem.trans_id == trans_id, TxItem.state == "pending")
                            .values(state="ok"))
    feeds.wait_indexed = all_ok
    indexing = deps.root / app.app_id / "indexing"
    for folder in ("indexing", "processing", "processed", "failed"):
        (deps.root / app.app_id / folder).mkdir(parents=True)
    shutil.copy(path, indexing / f"{app.app_key}_FULL.csv.gz")
    (indexing / f"{app.app_key}_FULL.txt").write_bytes(b"")
    base = peak_mib()
    runner = Runner(deps)
    start = time.perf_counter()
    [claimed] = await Watcher(deps, runner).scan()
    t_claim = time.perf_counter() - start
    await runner.settle()
    total = time.perf_counter() - start
    done = await feeds.load(deps, claimed.feed_id)
    assert done.state == "done" and NullBus.events == rows, (done.state, done.error, NullBus.events)
    print(f"  feed            {rows:>9,} rows  {total:6.2f} s  {rows / total:>9,.0f} rows/s  "
          f"peak RSS {peak_mib():6.1f} MiB (before the feed {base:.1f})  counts {done.counts}")
    print("                  claim %.2fs, " % t_claim + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
          + f"; staging {rows / timings['staging']:,.0f} rows/s")
    await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sizes", help="comma-separated row counts (default: --rows)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, path, rows = args.child
        if what == "parse":
            return parse_validate(Path(path))
        work = Path(tempfile.mkdtemp(prefix="magpie-feed-bench-db-"))
        try:
            return asyncio.run(_feed(Path(path), int(rows), work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    sizes = [int(s) for s in (args.sizes or str(args.rows)).split(",")]
    folder = Path(tempfile.mkdtemp(prefix="magpie-feed-bench-"))
    try:
        for rows in sizes:
            path = folder / f"feed-{rows}.csv.gz"
            write_feed(path, rows)
            print(f"{rows:,} rows, {path.stat().st_size / 1e6:.1f} MB gzip")
            for what in ("parse", "feed"):
                subprocess.run([sys.executable, __file__, "--child", what, str(path), str(rows)], check=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
