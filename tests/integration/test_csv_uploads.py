"""CSV upload use cases and routes over SQLite, the local object store and a recording bus."""
import asyncio
import io
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.errors import Conflict, NotFound, SchemaError
from magpie.common.events.ingest import ItemOp, ItemStatus
from magpie.common.settings import Settings
from magpie.common.storage.local import LocalObjectStore
from magpie.gateway import errors
from magpie.gateway.api import uploads as uploads_api
from magpie.gateway.api.schemas import FieldIn
from magpie.gateway.controlplane import schema
from magpie.ingestion import service, uploads
from magpie.ingestion.csv_feed import CsvFormatError
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.store import IngestStore
from magpie.ingestion.tables import TxItem
from magpie.ingestion.uploads import Upload, UploadDeps, UploadTooLarge
from tests.fixtures.control import control_plane, new_app

pytestmark = pytest.mark.integration


class Bus:
    """Records events; `gate` (when set) makes publish number `block_at` wait for it."""

    def __init__(self, block_at=None):
        self.events, self.block_at, self.gate = [], block_at, asyncio.Event()

    async def publish(self, event, *, key=None):
        if self.block_at is not None and len(self.events) + 1 == self.block_at:
            await self.gate.wait()
        self.events.append(event)


class Reader:
    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)

    async def read(self, size=-1):
        return self._f.read(size)


@pytest.fixture
async def env(tmp_path):
    engine, db = await control_plane(tmp_path / "c.sqlite3")
    bare = await new_app(db, "NoSchema")
    shop = await new_app(db, "Shop", [FieldIn(name="brand", type="string", searchable=True),
                                      FieldIn(name="price", type="float")])
    objects = LocalObjectStore(tmp_path / "objects")
    await objects.start()
    deps = UploadDeps(ingest=IngestDeps(store=IngestStore(db), bus=Bus(), schemas=SchemaProvider(db)),
                      db=db, objects=objects, work_dir=tmp_path / "uploads")
    yield SimpleNamespace(deps=deps, db=db, bare=bare, shop=shop, tmp=tmp_path, objects=objects)
    await uploads.stop()
    await engine.dispose()


FEED = (
    "im_name,im_url,brand,price,description\n"
    "a,http://img/a.jpg,Nike,49.99,\"Red, with laces\nand a second line\"\n"  # lines 2-3
    "b,http://img/b.jpg,Puma,19.5,plain\n"
    "c,,Nike,10,no url and new\n"                                               # 108
    "d,http://img/d.jpg,Puma,cheap,bad price\n"                                 # 109 once price is float
    "e,http://img/e.jpg,Nike\n"                                                 # ragged
    "a,http://img/a2.jpg,Nike,1,dup\n"                                          # 107: repeats line 2
    ",http://img/x.jpg,Nike,2,no name\n"                                        # 107
    "f,http://img/f.jpg,Nike,5,ok\n"
)


async def status(env, app_id, trans_id):
    return await env.deps.ingest.store.status(app_id, trans_id, error_limit=50)


async def finish_items(env, ok=True):
    for e in env.deps.ingest.bus.events:
        await env.deps.ingest.store.record(ItemStatus(app_id=e.app_id, trans_id=e.trans_id, im_name=e.im_name,
                                                      op=e.op, stage="search", ok=ok))


async def test_no_schema_needs_confirmation_then_one_transaction_with_line_errors(env):
    up = await uploads.receive(env.deps, env.bare.app_id, "feed.csv", Reader(FEED.encode()))
    assert (up.state, up.trans_id, up.columns) == ("needs_confirmation", None, FEED.split("\n")[0].split(","))
    assert up.proposal["fields"] == [
        {"name": "brand", "type": "string", "searchable": True},
        {"name": "price", "type": "string", "searchable": False},  # "cheap" is in the sample
        {"name": "description", "type": "string", "searchable": False}]
    assert await env.objects.get(f"{env.bare.app_id}/uploads/{up.upload_id}.csv") == FEED.encode()
    await uploads.settle()
    assert env.deps.ingest.bus.events == []

    fields = [FieldIn(name="brand", type="string", searchable=True), FieldIn(name="price", type="float")]
    confirmed = await uploads.confirm(env.deps, env.bare.app_id, up.upload_id, fields)
    assert confirmed.state == "processing" and confirmed.trans_id and confirmed.ignored == ["description"]
    assert [f.name for f in (await env.deps.ingest.schemas.get(env.bare.app_id)).fields] == ["brand", "price"]
    await uploads.settle()

    done = await uploads.get(env.deps, env.bare.app_id, up.upload_id)
    assert (done.state, done.rows_read) == ("done", 8)
    assert [(e.im_name, e.fields) for e in env.deps.ingest.bus.events] == [
        ("a", {"brand": "Nike", "price": 49.99}), ("b", {"brand": "Puma", "price": 19.5}),
        ("f", {"brand": "Nike", "price": 5.0})]
    st = await status(env, env.bare.app_id, done.trans_id)
    assert (st.total, st.success_count, st.fail_count, st.processed_percent) == (8, 0, 5, 62)
    assert [(e.im_name, e.error_code, e.error_message) for e in st.errors] == [
        ("c", 108, "Line 5: Missing im_url."),
        ("d", 109, "Line 6: price should be of data type float."),
        ("e", 400, "Line 7 has 3 cells; the header has 5."),
        ("<line 8>", 107, "Line 8: im_name 'a' repeats line 2; only the first row of a name is used."),
        ("<line 9>", 107, "Line 9: Invalid im_name.")]
    await finish_items(env)
    assert (await status(env, env.bare.app_id, done.trans_id)).processed_percent == 100
    # The object store has the file: the working copy is gone.
    assert not list((env.tmp / "uploads").rglob("*.csv"))


async def test_app_with_schema_processes_at_once_and_reports_ignored_columns(env):
    data = "im_name,im_url,brand,colour\nx,http://img/x.jpg,Nike,red\ny,http://img/y.jpg,Puma,blue\n"
    up = await uploads.receive(env.deps, env.shop.app_id, "f.csv", Reader(data.encode()))
    assert up.state == "processing" and up.trans_id and up.ignored == ["colour"] and up.proposal is None
    await uploads.settle(up.upload_id)
    assert [(e.im_name, e.op, e.fields) for e in env.deps.ingest.bus.events] == [
        ("x", ItemOp.UPSERT, {"brand": "Nike"}), ("y", ItemOp.UPSERT, {"brand": "Puma"})]
    listed = await env.deps.ingest.store.list_transactions(env.shop.app_id)
    assert [(t.trans_id, t.source, t.total) for t in listed] == [(up.trans_id, "csv", 2)]


async def test_only_mandatory_columns_need_no_confirmation_and_metadata_rows_update(env):
    await service.insert(env.deps.ingest, env.bare.app_id, [(0, {"im_name": "old", "im_url": "http://i/o.jpg"})])
    up = await uploads.receive(env.deps, env.bare.app_id, "f.csv", Reader(b"im_name,im_url\nold,\nnew,\n"))
    assert up.state == "processing"
    await uploads.settle()
    assert env.deps.ingest.bus.events[-1].op is ItemOp.METADATA
    st = await status(env, env.bare.app_id, up.trans_id)
    assert (st.total, st.fail_count) == (2, 1) and st.errors[0].error_code == 108


async def test_percent_stays_below_100_while_the_file_is_read(env, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK", 2)
    env.deps.ingest.bus = bus = Bus(block_at=3)
    data = "im_name,im_url\n" + "".join(f"i{i},http://img/{i}.jpg\n" for i in range(5))
    up = await uploads.receive(env.deps, env.shop.app_id, "f.csv", Reader(data.encode()))
    while len(bus.events) < 2 or (await uploads.get(env.deps, env.shop.app_id, up.upload_id)).rows_read < 4:
        await asyncio.sleep(0.01)
    await finish_items(env)
    st = await status(env, env.shop.app_id, up.trans_id)
    assert (st.total, st.success_count, st.processed_percent) == (5, 2, 40)  # 4 rows + the file
    bus.gate.set()
    await uploads.settle()
    await finish_items(env)
    st = await status(env, env.shop.app_id, up.trans_id)
    assert (st.total, st.success_count, st.processed_percent) == (5, 5, 100)


async def test_a_stop_mid_file_resumes_from_the_last_chunk_and_loses_nothing(env, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK", 2)
    env.deps.ingest.bus = Bus(block_at=3)
    data = "im_name,im_url,brand\n" + "".join(f"i{i},http://img/{i}.jpg,B{i}\n" for i in range(7))
    up = await uploads.receive(env.deps, env.shop.app_id, "f.csv", Reader(data.encode()))
    while (await uploads.get(env.deps, env.shop.app_id, up.upload_id)).rows_read < 4:
        await asyncio.sleep(0.01)
    await finish_items(env)  # i0 and i1 went through the pipeline
    await uploads.stop()  # the process dies while publishing the second chunk
    assert (await uploads.get(env.deps, env.shop.app_id, up.upload_id)).state == "processing"
    (env.tmp / "uploads" / env.shop.app_id / f"{up.upload_id}.csv").unlink()  # a fresh disk

    env.deps.ingest.bus = Bus()  # the next start
    assert await service.replay_pending(env.deps.ingest) == 2
    assert await uploads.resume(env.deps) == 1
    await uploads.settle()
    done = await uploads.get(env.deps, env.shop.app_id, up.upload_id)
    assert (done.state, done.rows_read) == ("done", 7)
    assert [e.im_name for e in env.deps.ingest.bus.events] == ["i2", "i3", "i4", "i5", "i6"]
    async with env.db() as s:
        assert await s.scalar(select(func.count()).select_from(TxItem)) == 7
    assert (await status(env, env.shop.app_id, up.trans_id)).total == 7


async def test_a_large_file_stays_on_local_disk_only(env, monkeypatch):
    monkeypatch.setattr(uploads, "OBJECT_COPY_MAX", 10)
    up = await uploads.receive(env.deps, env.shop.app_id, "f.csv", Reader(b"im_name,im_url\na,http://i/a\n"))
    await uploads.settle()
    assert up.object_key is None and await env.objects.list(f"{env.shop.app_id}/") == []
    assert (env.tmp / "uploads" / env.shop.app_id / f"{up.upload_id}.csv").is_file()


@pytest.mark.parametrize("data, error, message", [
    (b"im_name,im_url\n" + b"a,http://i/a.jpg\n" * 100, UploadTooLarge, "larger than 1000 bytes"),
    (b"im_name,im_url\na,\xff\n", CsvFormatError, r"offset 17 \(line 2\)"),
    (b"im_url,brand\n", CsvFormatError, "no im_name column"),
])
async def test_refused_files_leave_nothing_behind(env, data, error, message):
    with pytest.raises(error, match=message):
        await uploads.receive(env.deps, env.shop.app_id, "f.csv", Reader(data), max_bytes=1000)
    assert not list((env.tmp / "uploads").rglob("*.csv")) and await env.objects.list("") == []
    async with env.db() as s:
        assert await s.scalar(select(func.count()).select_from(Upload)) == 0


async def test_confirm_rules(env):
    up = await uploads.receive(env.deps, env.bare.app_id, "f.csv", Reader(FEED.encode()))
    with pytest.raises(NotFound):
        await uploads.get(env.deps, env.shop.app_id, up.upload_id)
    with pytest.raises(SchemaError, match="only letters"):
        await uploads.confirm(env.deps, env.bare.app_id, up.upload_id, [FieldIn(name="bad name", type="string")])
    assert (await uploads.get(env.deps, env.bare.app_id, up.upload_id)).state == "needs_confirmation"
    await schema.set_schema(env.db, 1, env.bare.app_id, [FieldIn(name="brand", type="string")])
    with pytest.raises(Conflict, match="got a schema"):
        await uploads.confirm(env.deps, env.bare.app_id, up.upload_id, [FieldIn(name="price", type="float")])
    confirmed = await uploads.confirm(env.deps, env.bare.app_id, up.upload_id, [FieldIn(name="brand", type="string")])
    assert confirmed.state == "processing"
    with pytest.raises(Conflict, match="is processing|is done"):
        await uploads.confirm(env.deps, env.bare.app_id, up.upload_id, [FieldIn(name="brand", type="string")])


# --- routes ---------------------------------------------------------------------------------
@pytest.fixture
async def client(env):
    api = FastAPI()
    errors.install(api)
    api.include_router(uploads_api.router)
    api.state.container = SimpleNamespace(ingest=env.deps.ingest, db=env.db, objects=env.objects,
                                          settings=Settings(data_dir=env.tmp))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        yield c


def auth(created):
    return created.access_key, created.secret_key


async def test_routes_upload_confirm_and_get(env, client):
    r = await client.post("/v1/uploads", auth=auth(env.bare), files={"file": ("feed.csv", FEED.encode(), "text/csv")})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "OK" and body["method"] == "uploads"
    assert body["state"] == "needs_confirmation" and "trans_id" not in body
    assert body["proposed_schema"][0] == {"name": "brand", "type": "string", "searchable": True}
    assert body["columns"] == ["im_name", "im_url", "brand", "price", "description"]
    r = await client.post(f"/v1/uploads/{body['upload_id']}/confirm", auth=auth(env.bare),
                          json={"fields": body["proposed_schema"]})
    assert r.status_code == 200 and r.json()["state"] == "processing" and r.json()["trans_id"]
    await uploads.settle()
    got = (await client.get(f"/v1/uploads/{body['upload_id']}", auth=auth(env.bare))).json()
    assert (got["state"], got["rows_read"], got["method"]) == ("done", 8, "uploads/get")
    other = await client.get(f"/v1/uploads/{body['upload_id']}", auth=auth(env.shop))
    assert other.status_code == 404 and other.json()["error"]["code"] == 404
    again = await client.post(f"/v1/uploads/{body['upload_id']}/confirm", auth=auth(env.bare), json={"fields": []})
    assert again.status_code == 409


async def test_routes_refusals(env, client, monkeypatch):
    no_file = await client.post("/v1/uploads", auth=auth(env.shop), data={"x": "1"})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
    search_only = await client.post(f"/v1/uploads?access_key={env.shop.app_key}",
                                    files={"file": ("f.csv", b"im_name\na\n")})
    assert search_only.status_code == 403
    bad = await client.post("/v1/uploads", auth=auth(env.shop), files={"file": ("f.csv", b"im_name,a,a\n")})
    assert bad.status_code == 400 and "more than once" in bad.json()["error"]["message"]
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    big = b"im_name,im_url\n" + b"a,http://i/a.jpg\n" * 100
    declared = await client.post("/v1/uploads", auth=auth(env.shop), files={"file": ("f.csv", big * 50)})
    counted = await client.post("/v1/uploads", auth=auth(env.shop), files={"file": ("f.csv", big)})
    for r in (declared, counted):
        assert r.status_code == 413 and r.json() == {"status": "fail", "method": "uploads", "error": {
            "code": 413, "message": r.json()["error"]["message"]}}
    assert "larger than" in counted.json()["error"]["message"]
    assert (await client.get("/v1/uploads/../etc", auth=auth(env.shop))).status_code == 404
    assert (await client.get("/v1/uploads/upnope", auth=auth(env.shop))).status_code == 404
