"""SFTP feed logic over SQLite and a simulated pipeline: modes, guard, duplicates, bad input, resume."""
import asyncio
import csv
import gzip
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker
from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.events.ingest import ItemAccepted, ItemStatus
from magpie.gateway.api.schemas import AppIn, FieldIn
from magpie.gateway.controlplane import apps, members, schema
from magpie.ingestion import service
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.sftp import feed as feeds
from magpie.ingestion.sftp import staging
from magpie.ingestion.sftp.feed import FeedDeps
from magpie.ingestion.sftp.guard import GuardPolicy
from magpie.ingestion.sftp.runner import Runner
from magpie.ingestion.sftp.tables import Feed, create_tables as create_sftp_tables
from magpie.ingestion.sftp.watcher import Watcher
from magpie.ingestion.store import IngestStore, create_tables
from magpie.ingestion.tables import CatalogItem

pytestmark = pytest.mark.integration


class Pipeline:
    """A bus that answers each item like the pipeline would: im_url with 'bad' fails (201).

    While `hold` is set, outcomes wait until `release()`."""

    def __init__(self):
        self.store, self.events, self.hold, self._held = None, [], False, []

    async def publish(self, event, *, key=None):
        if not isinstance(event, ItemAccepted):
            return
        self.events.append(event)
        if self.hold:
            self._held.append(event)
        else:
            await self._answer(event)

    async def release(self):
        held, self._held = self._held, []
        for e in held:
            await self._answer(e)

    async def _answer(self, e):
        bad = bool(e.im_url and "bad" in e.im_url)
        await self.store.record(ItemStatus(app_id=e.app_id, trans_id=e.trans_id, im_name=e.im_name, op=e.op,
                                           stage="search", ok=not bad, error_code=201 if bad else None,
                                           error_message="Could not download the image from im_url." if bad else None))


@pytest.fixture
async def env(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite3'}")
    await create_schema(engine)
    await create_tables(engine)
    await create_sftp_tables(engine)
    db = make_sessionmaker(engine)
    await members.ensure_initial_owner(db, "o@example.com", "password123")
    app = await apps.create_app(db, 1, AppIn(name="Shop"))
    await schema.set_schema(db, 1, app.app_id, [FieldIn(name="brand", type="string", searchable=True),
                                                 FieldIn(name="price", type="float")])
    bus = Pipeline()
    ingest = IngestDeps(store=IngestStore(db), bus=bus, schemas=SchemaProvider(db))
    bus.store = ingest.store
    deps = FeedDeps(ingest=ingest, root=tmp_path / "sftp", policy=GuardPolicy(min_items=5, max_remove=0.5),
                    poll_s=0.01)
    runner = Runner(deps, backoff_s=0.01)
    watcher = Watcher(deps, runner, marker_grace_s=0)
    (deps.root / app.app_id / "indexing").mkdir(parents=True)
    for folder in ("processing", "processed", "failed"):
        (deps.root / app.app_id / folder).mkdir()
    yield SimpleNamespace(deps=deps, db=db, app=app, key=app.app_key, bus=bus, runner=runner, watcher=watcher,
                          folder=deps.root / app.app_id)
    await runner.stop()
    await engine.dispose()


def put(env, name, rows, header=("im_name", "im_url", "brand", "price"), marker=True, raw=None):
    """Write a gzip CSV feed (and its marker) into /indexing."""
    path = env.folder / "indexing" / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        with gzip.open(path, "wt", newline="") as f:
            w = csv.writer(f)
            if header:
                w.writerow(header)
            w.writerows(rows)
    if marker:
        (env.folder / "indexing" / (name.split(".")[0] + ".txt")).write_bytes(b"")


async def process(env):
    claimed = await env.watcher.scan()
    await env.runner.settle()
    return [await feeds.load(env.deps, f.feed_id) for f in claimed]


async def catalog(env):
    async with env.db() as s:
        return set(await s.scalars(select(CatalogItem.im_name).where(CatalogItem.app_id == env.app.app_id)))


async def status(env, feed):
    return await env.deps.ingest.store.status(env.app.app_id, feed.trans_id, error_limit=100)


def result_rows(env, feed):
    with open(env.folder / feed.result_path, newline="") as f:
        return list(csv.reader(f))


async def seed(env, n):
    rows = [(f"item-{i}", f"http://img/{i}.jpg", "Acme", str(i)) for i in range(n)]
    put(env, f"{env.key}_INCREMENT.csv.gz", rows)
    [f] = await process(env)
    assert f.state == "done", f.error


async def test_full_replaces_the_catalog_and_files_a_result(env):
    await seed(env, 4)
    put(env, f"{env.key}.csv.gz", [("item-1", "http://img/1b.jpg", "Acme", "1.5"),
                                   ("item-2", "", "Acme", "cheap"),            # 109: kept, not removed
                                   ("new", "http://img/bad.jpg", "Acme", "3"),  # 201 at download
                                   ("item-3", "", "Puma", "")])                # metadata only
    [f] = await process(env)
    assert f.state == "done" and f.mode == "FULL", f.error
    assert await catalog(env) == {"item-1", "item-2", "item-3"}  # item-0 removed, "new" never made it
    st = await status(env, f)
    assert (st.total, st.success_count, st.fail_count, st.processed_percent) == (5, 3, 2, 100)
    assert {e.im_name: e.error_code for e in st.errors} == {"item-2": 109, "new": 201}
    assert f.counts == {"rows": 4, "valid": 3, "invalid": 1, "duplicates": 0, "catalog": 4, "would_remove": 1,
                        "removed": 1}
    assert f.path == f"processed/{f.feed_id}_{env.key}.csv.gz" and (env.folder / f.path).is_file()
    rows = result_rows(env, f)
    assert rows[0] == ["line", "im_name", "error_code", "message"] and rows[1][3].startswith("DONE: FULL feed")
    assert rows[2:] == [["3", "item-2", "109", "Line 3: price should be of data type float."],
                        ["4", "new", "201", "Could not download the image from im_url."]]
    assert list((env.folder / "indexing").iterdir()) == []


async def test_increment_then_its_delete_after_it_is_indexed(env):
    await seed(env, 3)
    env.bus.hold = True
    put(env, f"{env.key}_DELETE.csv.gz", [("item-0",), ("nope",), ("item-0",)], header=("im_name",))
    put(env, f"{env.key}_INCREMENT.csv.gz", [("item-9", "http://img/9.jpg", "Acme", "9")])
    claimed = await env.watcher.scan()
    assert [c.mode for c in claimed] == ["INCREMENT", "DELETE"]
    for _ in range(100):
        await asyncio.sleep(0.01)
        inc = await feeds.load(env.deps, claimed[0].feed_id)
        if inc.state == "indexing":
            break
    assert (await feeds.load(env.deps, claimed[1].feed_id)).state == "queued"  # waits for the increment
    env.bus.hold = False
    await env.bus.release()
    await env.runner.settle()
    inc, dele = [await feeds.load(env.deps, c.feed_id) for c in claimed]
    assert (inc.state, dele.state) == ("done", "done")
    assert await catalog(env) == {"item-1", "item-2", "item-9"}
    st = await status(env, dele)
    assert (st.total, st.success_count, st.fail_count) == (3, 1, 2)
    assert sorted((e.error_code, e.im_name) for e in st.errors) == [(102, "nope"), (107, "<line 2>")]


async def test_duplicates_last_row_wins_across_chunks(env, monkeypatch):
    monkeypatch.setattr(staging, "CHUNK", 2)
    rows = [("a", "http://img/a1.jpg", "One", "1"), ("b", "http://img/b.jpg", "B", "2"),
            ("a", "http://img/a2.jpg", "Two", "2"), ("c", "", "C", "3"),
            ("a", "http://img/a3.jpg", "Three", "x")]  # the last "a" is invalid
    put(env, f"{env.key}_INCREMENT.csv.gz", rows)
    [f] = await process(env)
    assert f.counts == {"rows": 5, "valid": 1, "invalid": 4, "duplicates": 2}
    assert [(e.im_name, e.fields) for e in env.bus.events] == [("b", {"brand": "B", "price": 2.0})]
    st = await status(env, f)
    errors = {e.im_name: (e.error_code, e.error_message) for e in st.errors}
    assert errors["<line 2>"] == (107, "Line 2: im_name 'a' appears again on line 4; the last row of a name "
                                       "wins, so this one is not applied.")
    assert errors["<line 4>"][1].startswith("Line 4: im_name 'a' appears again on line 6")
    assert errors["a"] == (109, "Line 6: price should be of data type float.")
    assert errors["c"][0] == 108


async def test_guard_refuses_a_full_that_would_empty_the_catalog_then_force(env):
    await seed(env, 10)
    put(env, f"{env.key}_FULL.csv.gz", [("item-0", "http://img/0.jpg", "Acme", "1"),
                                        ("item-1", "http://img/1.jpg", "Acme", "1")])
    events = len(env.bus.events)
    [f] = await process(env)
    assert f.state == "refused" and "remove 8 of the 10 items" in f.error and "magpie sftp force" in f.error
    assert len(env.bus.events) == events and len(await catalog(env)) == 10  # nothing applied
    assert f.path.startswith("failed/") and "FULL feed refused" in result_rows(env, f)[1][3]
    st = await status(env, f)
    assert (st.total, st.fail_count, st.processed_percent) == (2, 2, 100)
    assert st.errors[0].error_message.startswith("Not applied: FULL feed refused")
    forced = await feeds.force(env.deps, env.app.app_id, f.feed_id)
    assert forced.state == "queued" and forced.trans_id != f.trans_id
    env.runner.kick(env.app.app_id)
    await env.runner.settle()
    done = await feeds.load(env.deps, f.feed_id)
    assert done.state == "done" and done.path.startswith("processed/") and await catalog(env) == {"item-0", "item-1"}


async def test_header_only_full_is_refused_even_for_a_small_catalog(env):
    await seed(env, 2)
    put(env, f"{env.key}.csv.gz", [])
    [f] = await process(env)
    assert f.state == "refused" and "The file has no rows" in f.error and len(await catalog(env)) == 2


@pytest.mark.parametrize("raw, says", [
    (b"not gzip at all", "not valid gzip data"),
    (gzip.compress(b"im_name,im_url\n" + b"a,http://img/a.jpg\n" * 3)[:-12], "not valid gzip data"),  # truncated
    (gzip.compress(b"sku,im_url\nx,http://img/x.jpg\n"), "no im_name column"),
    (gzip.compress(b""), "The file is empty"),
])
async def test_unreadable_files_fail_and_change_nothing(env, raw, says):
    await seed(env, 2)
    before = len(env.bus.events)
    put(env, f"{env.key}_FULL.csv.gz", None, raw=raw)
    [f] = await process(env)
    assert f.state == "failed" and says in f.error and "Nothing of this file was applied" in f.error, f.error
    assert len(env.bus.events) == before and len(await catalog(env)) == 2
    st = await status(env, f)
    assert st.processed_percent == 100 and says in st.errors[-1].error_message


async def test_rejections_say_why(env):
    put(env, f"{env.key}_FULL.zip", None, raw=b"PK")
    put(env, "deadbeef_INCREMENT.csv.gz", [("a", "http://img/a.jpg", "", "")])
    (env.folder / "indexing" / "orphan.txt").write_bytes(b"")
    put(env, f"{env.key}_INCREMENT.csv.gz", [("a", "http://img/a.jpg", "", "")], marker=False)  # waits
    got = {f.filename: f for f in await process(env)}
    assert "only gzip-compressed CSV files ending in .csv.gz" in got[f"{env.key}_FULL.zip"].error
    assert "'deadbeef' is not a live app key" in got["deadbeef_INCREMENT.csv.gz"].error
    assert "has no data file" in got["orphan.txt"].error
    assert {f.state for f in got.values()} == {"rejected"} and all(f.trans_id is None for f in got.values())
    assert all((env.folder / f.result_path).is_file() for f in got.values())
    assert [p.name for p in (env.folder / "indexing").iterdir()] == [f"{env.key}_INCREMENT.csv.gz"]


async def test_unknown_columns_are_ignored_and_reported(env):
    put(env, f"{env.key}_INCREMENT.csv.gz", [("a", "http://img/a.jpg", "Acme", "red")],
        header=("im_name", "im_url", "brand", "colour"))
    [f] = await process(env)
    assert f.state == "done" and f.ignored == ["colour"] and env.bus.events[0].fields == {"brand": "Acme"}


async def test_the_same_file_twice_while_the_first_runs_is_skipped(env):
    env.bus.hold = True
    rows = [("a", "http://img/a.jpg", "", "")]
    put(env, f"{env.key}_INCREMENT.csv.gz", rows)
    [first] = await env.watcher.scan()
    put(env, f"{env.key}_INCREMENT.csv.gz", rows)
    [second] = await env.watcher.scan()
    assert second.state == "skipped" and first.feed_id in second.error and second.path.startswith("processed/")
    env.bus.hold = False
    await env.bus.release()
    await env.runner.settle()
    assert (await feeds.load(env.deps, first.feed_id)).state == "done"


async def test_killed_during_a_full_feed_the_next_start_completes_it(env, monkeypatch):
    await seed(env, 6)
    monkeypatch.setattr(staging, "CHUNK", 2)
    env.bus.hold = True
    put(env, f"{env.key}.csv.gz", [(f"item-{i}", f"http://img/{i}v2.jpg", "New", "1") for i in range(3)]
        + [("extra", "http://img/x.jpg", "New", "1")])
    [f] = await env.watcher.scan()
    for _ in range(200):  # wait until its rows are published and waiting for their outcome
        await asyncio.sleep(0.01)
        if (await feeds.load(env.deps, f.feed_id)).state == "indexing":
            break
    await env.runner.stop()  # the process dies: outcomes never come, nothing was removed
    assert len(await catalog(env)) == 7
    env.bus._held.clear()
    env.bus.hold = False
    assert await service.replay_pending(env.deps.ingest) == 4  # what the next start does first
    runner = Runner(env.deps)
    assert await runner.resume() == 1
    await runner.settle()
    done = await feeds.load(env.deps, f.feed_id)
    assert done.state == "done" and await catalog(env) == {"item-0", "item-1", "item-2", "extra"}
    st = await status(env, done)
    assert (st.total, st.success_count, st.processed_percent) == (7, 7, 100)


async def test_killed_while_staging_resumes_after_the_last_chunk(env, monkeypatch):
    monkeypatch.setattr(staging, "CHUNK", 2)
    put(env, f"{env.key}_INCREMENT.csv.gz", [(f"i{n}", f"http://img/{n}.jpg", "", "") for n in range(7)])
    calls, real = [], staging.record_chunk

    async def dies_on_third(deps, feed, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise asyncio.CancelledError()  # as a kill would stop it mid-file
        await real(deps, feed, rows)

    monkeypatch.setattr(staging, "record_chunk", dies_on_third)
    [f] = await env.watcher.scan()
    await env.runner.settle()
    mid = await feeds.load(env.deps, f.feed_id)
    assert (mid.state, mid.rows_read, env.bus.events) == ("staging", 4, [])
    monkeypatch.setattr(staging, "record_chunk", real)
    runner = Runner(env.deps)
    await runner.resume()
    await runner.settle()
    done = await feeds.load(env.deps, f.feed_id)
    assert done.state == "done" and sorted(e.im_name for e in env.bus.events) == [f"i{n}" for n in range(7)]
    async with env.db() as s:
        assert (await s.get(Feed, f.feed_id)).counts["rows"] == 7
