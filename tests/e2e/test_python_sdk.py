"""The Python SDK (sdk/python, `magpie_sdk`) against a live server: admin, Data API, search,
tracking and reports; bulk CSV and folder uploads; typed errors; retries through a real
failing proxy; the async client."""
from __future__ import annotations

import asyncio
import csv
import functools
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from magpie_sdk import (
    AsyncMagpie,
    AuthenticationError,
    ConfigurationError,
    Field,
    InvalidRequestError,
    Magpie,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from magpie_sdk.cli import main as sdk_cli
from tests.fixtures.catalog import catalog, encode, scene, serve_files
from tests.fixtures.http import running
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD, admin_headers, free_port

pytestmark = pytest.mark.e2e
ITEMS = catalog(12)
FIELDS = [Field("brand", "string", True), Field("price", "float", True), Field("title", "text", True),
          Field("sku", "string")]


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    with serve_files({f"{it['im_name']}.png": it["image"] for it in ITEMS}
                     | {f"bulk{i}.png": encode(scene(100 + i)) for i in range(125)}) as url:
        yield url


@pytest.fixture(scope="module")
def admin(server) -> Iterator[Magpie]:
    with Magpie(server.url) as client:
        client.admin.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        yield client


@pytest.fixture(scope="module")
def app(admin):
    created = admin.admin.create_app("SDK shop")
    schema = admin.admin.set_schema(created.app_id, FIELDS)
    assert [f.name for f in schema.fields] == ["brand", "price", "title", "sku"]
    assert created.secret_key and created.app_key and created.access_key
    return created


@pytest.fixture(scope="module")
def client(admin, app, files) -> Iterator[Magpie]:
    with admin.admin.client_for(app) as c:
        rows = [{k: it[k] for k in ("im_name", "brand", "price", "title", "sku")}
                | {"im_url": f"{files}/{it['im_name']}.png"} for it in ITEMS]
        answer = c.insert(rows)
        assert answer.status == "OK" and answer.total == len(ITEMS) and answer.trans_id
        [status] = c.wait(answer.trans_id, timeout=120)
        assert status.done and status.success_count == len(ITEMS), status
        yield c


def test_admin_api(admin, app):
    assert app.app_id in [a.app_id for a in admin.admin.apps()]
    assert admin.admin.me()["email"] == ADMIN_EMAIL
    key = admin.admin.create_key(app.app_id, "ci")
    assert key.secret_key and key.label == "ci"
    assert {k.access_key for k in admin.admin.keys(app.app_id)} >= {app.access_key, key.access_key}
    assert admin.admin.revoke_key(app.app_id, key.access_key).revoked_at is not None
    assert admin.admin.rename_app(app.app_id, "SDK shop 2").name == "SDK shop 2"
    assert {f.name for f in admin.admin.schema_preset()}
    with pytest.raises(InvalidRequestError) as err:
        admin.admin.set_schema(app.app_id, [*FIELDS, {"name": "bad name!", "type": "string"}])
    assert err.value.status_code == 400 and err.value.field == "bad name!"
    assert [f.name for f in admin.admin.schema(app.app_id).fields] == ["brand", "price", "title", "sku"]


def test_insert_search_track_report(client, files, tmp_path):
    info = client.app_info()
    assert info.scope == "full" and info.item_count == len(ITEMS)
    assert client.get_item("s3")["value_map"]["sku"] == "SKU-3"

    found = client.search("s4", fl=["brand", "price"], fq={"brand": "Nike OR nike"}, score=True,
                          limit=5, facets=["brand", "price"])
    assert found.method == "search" and len(found) == 5 and found.reqid and "s4" not in found.im_names
    assert all(h.value_map["brand"] in ("Nike", "nike") and 0 <= h.score <= 1 for h in found)
    assert {f.key for f in found.facets} == {"brand", "price"}
    assert next(f for f in found.facets if f.key == "price").range is not None

    path = tmp_path / "q.png"
    path.write_bytes(ITEMS[7]["image"])
    by_file = client.uploadsearch(path, limit=3, score=True)
    assert by_file.im_names[0] == "s7" and by_file.hits[0].score > 0.9 and by_file.im_id
    page2 = client.uploadsearch(im_id=by_file.im_id, limit=3, page=2)
    assert page2.total == by_file.total and not set(page2.im_names) & set(by_file.im_names)
    assert client.uploadsearch(ITEMS[9]["image"], limit=1).im_names == ["s9"]
    assert client.uploadsearch(im_url=f"{files}/s5.png", limit=1).im_names == ["s5"]

    recs = client.recommendation("s0", limit=20)
    assert recs.method == "recommendation" and recs.hits and "s0-copy" not in recs.im_names
    assert client.colorsearch("dc141e", limit=1).im_names == ["swatch-red"]

    # The shopper clicks the second result and buys it: attributed to the search by its reqid.
    client.track("product_click", query_id=found.reqid, pid=found.hits[1].im_name, pos=2)
    batch = client.track_batch([
        {"action": "add_to_cart", "query_id": found.reqid, "pid": found.hits[1].im_name},
        {"action": "transaction", "query_id": found.reqid, "value": 49.5, "currency": "EUR"},
        {"action": "product_click", "query_id": found.reqid},  # no pid: refused, the rest recorded
    ])
    assert batch.status == "warning" and sorted(batch.accepted) == [0, 1]
    assert [e.index for e in batch.errors] == [2] and "pid" in batch.errors[0].message
    deadline = time.monotonic() + 20
    while (report := client.report())["totals"]["clicks"] < 1 and time.monotonic() < deadline:
        time.sleep(0.3)
    totals = report["totals"]
    assert totals["clicks"] == 1 and totals["searches"] >= 1, totals
    assert report["revenue"][0]["currency"] == "EUR"


def test_update_and_remove(client):
    assert client.update([{"im_name": "s2", "sku": "SKU-2b"}]).status == "OK"
    deadline = time.monotonic() + 20
    while client.get_item("s2")["value_map"]["sku"] != "SKU-2b" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_item("s2")["value_map"]["sku"] == "SKU-2b"
    gone = client.remove(["swatch-green", "no-such-item"])
    assert gone.status == "warning" and [(e.code, e.im_name) for e in gone.errors] == [(102, "no-such-item")]
    client.wait(gone.trans_id, timeout=30)
    with pytest.raises(NotFoundError):
        client.get_item("swatch-green")
    # The JSON twins: typed values, the same transactions.
    typed = client.insert_items([{"im_name": "s3", "price": 99.5}])
    assert client.transaction(typed.trans_id).trans_id == typed.trans_id
    assert client.transactions(limit=5)[0]["trans_id"] == typed.trans_id
    [final] = client.wait(typed.trans_id, timeout=30)
    assert final.success_count == 1 and client.get_item("s3")["value_map"]["price"] == 99.5
    gone = client.remove_items(["s1-twin"])
    assert gone.status == "OK" and client.wait(gone.trans_id, timeout=30)[0].success_count == 1


def test_bulk_csv_upload_with_progress_bar(client, files, tmp_path, capfd):
    path = tmp_path / "catalog.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["im_name", "im_url", "brand", "price", "title"])
        for i in range(125):
            w.writerow([f"bulk{i}", f"{files}/bulk{i}.png", "Bulk", f"{i}.5", f"item {i}\nsecond line"])
        w.writerow(["no-url", "", "Bulk", "1", "x"])  # refused at once: 108
        w.writerow(["broken", f"{files}/missing.png", "Bulk", "1", "x"])  # fails to download: 201
    started = time.monotonic()
    result = client.upload_csv(path, timeout=180)
    took = time.monotonic() - started
    assert result.sent == 127 and result.success_count == 125 and result.fail_count == 2, result
    assert sorted((e.code, e.im_name) for e in result.errors) == [(108, "no-url"), (201, "broken")]
    assert len(result.trans_ids) == 2  # chunks of 100
    bar = capfd.readouterr().err
    assert "indexing" in bar and "127/127" in bar, bar
    found = client.search("bulk3", fq={"brand": "Bulk"}, fl=["price"], limit=200)
    assert found.total == 124 and "bulk3" not in found.im_names
    print(f"bulk: 127 rows in {took:.1f}s")


def test_folder_upload_through_the_cli(client, tmp_path, capsys):
    folder = tmp_path / "shop"
    (folder / "hats").mkdir(parents=True)
    for i in range(3):
        (folder / "hats" / f"hat {i}.png").write_bytes(encode(scene(300 + i)))
    (folder / "notes.txt").write_text("not an image")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(folder)))
    with running(server, "shop-folder") as port:
        base = f"http://127.0.0.1:{port}"
        code = sdk_cli(["upload", "folder", str(folder), "--base-url", base, "--field", "brand=Hats",
                        "--host", str(client._http.base_url), "--access-key", client.credentials.access_key,
                        "--secret-key", client.credentials.secret_key, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert '"indexed": 3' in out
    hats = client.search("hats/hat 1", fq={"brand": "Hats"}, fl=["brand"], qinfo=True)
    assert hats.total == 2 and hats.qinfo["im_url"] == f"{base}/hats/hat%201.png"
    # A name with a slash is one item, not a path: /v1/items/{im_name} takes it whole.
    assert client.get_item("hats/hat 1")["im_url"] == f"{base}/hats/hat%201.png"


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
        pass


def test_errors_map_to_typed_exceptions(server, client, app):
    with Magpie(server.url, access_key=app.access_key, secret_key="wrong") as bad:
        with pytest.raises(AuthenticationError) as err:
            bad.search("s1")
    assert err.value.code == 11 and err.value.status_code == 401
    with Magpie(server.url, app_key=app.app_key) as browser:
        assert browser.search("s1", limit=2).hits  # the search-only key searches...
        with pytest.raises(ConfigurationError):
            browser.insert([{"im_name": "x", "im_url": "http://x/y.png"}])  # ...has no secret
    with Magpie(server.url, access_key=app.app_key, secret_key="") as wrong:
        with pytest.raises(ConfigurationError):
            wrong.insert_status(1)
    with pytest.raises(NotFoundError) as err:
        client.search("nope")
    assert err.value.code == 1101 and err.value.method == "search" and err.value.reqid
    with pytest.raises(NotFoundError) as err:
        client.insert_status(999999)
    assert err.value.code == 101
    with pytest.raises(NotFoundError) as err:
        client.transaction(999999)
    assert err.value.code == 101 and err.value.status_code == 404
    with pytest.raises(InvalidRequestError) as err:
        client.search("s1", limit=1001)
    assert "limit" in err.value.message
    with pytest.raises(InvalidRequestError) as err:
        client.uploadsearch(b"this is no image")
    assert err.value.code == 1102
    with pytest.raises(InvalidRequestError) as err:
        client.insert([{"im_name": f"x{i}", "im_url": "http://x/y.png"} for i in range(101)])
    assert err.value.code == 103
    with pytest.raises(InvalidRequestError) as err:
        client.insert_items([])
    assert err.value.code == 104
    with pytest.raises(InvalidRequestError):
        client.track("product_view", query_id="abc")  # the pixel refuses it: no pid
    # A viewer may read but not create applications: the admin API's 403, as problem JSON.
    created = httpx.post(f"{server.url}/admin/v1/members", headers=admin_headers(server.url), json={
        "email": "viewer@example.com", "password": "viewer-password", "role": "viewer"})
    assert created.status_code == 201, created.text
    with Magpie(server.url) as viewer:
        viewer.admin.sign_in("viewer@example.com", "viewer-password")
        assert viewer.admin.apps()
        with pytest.raises(PermissionDeniedError) as err:
            viewer.admin.create_app("not allowed")
    assert err.value.status_code == 403
    with pytest.raises(AuthenticationError):
        Magpie(server.url).admin.sign_in(ADMIN_EMAIL, "wrong password")


class _FlakyProxy(BaseHTTPRequestHandler):
    """Answers 503 to the first `fail` requests, then forwards to the real server."""

    protocol_version = "HTTP/1.1"
    target = ""
    fail = 2
    seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
        pass

    def _handle(self) -> None:
        type(self).seen.append(f"{self.command} {self.path.split('?')[0]}")
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if len(self.seen) <= self.fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = httpx.request(self.command, self.target + self.path, headers=headers, content=body)
        self.send_response(r.status_code)
        self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = _handle  # noqa: N815 - http.server's naming


def test_retries_on_503_with_backoff(server, client, app):
    _FlakyProxy.target, _FlakyProxy.seen = server.url, []
    with running(ThreadingHTTPServer(("127.0.0.1", 0), _FlakyProxy), "flaky-proxy") as port:
        url = f"http://127.0.0.1:{port}"
        with Magpie(url, access_key=app.access_key, secret_key=app.secret_key, backoff=0.05) as c:
            assert c.search("s1", limit=3).hits
            assert _FlakyProxy.seen == ["GET /search"] * 3  # two 503s, then the answer
            _FlakyProxy.seen, _FlakyProxy.fail = [], 1
            with pytest.raises(ServerError) as err:  # a remove is not repeated
                c.remove(["s1"])
            assert err.value.status_code == 503 and _FlakyProxy.seen == ["POST /remove"]
        with Magpie(url, access_key=app.access_key, secret_key=app.secret_key, backoff=0.01,
                    max_retries=1) as c:
            _FlakyProxy.seen, _FlakyProxy.fail = [], 5
            with pytest.raises(ServerError):
                c.search("s1")
            assert len(_FlakyProxy.seen) == 2  # one try and one retry
    with Magpie(f"http://127.0.0.1:{free_port()}", app_key="k", backoff=0.01, max_retries=2) as down:
        started = time.monotonic()
        with pytest.raises(TransportError):
            down.search("s1")
        assert time.monotonic() - started < 5


async def test_async_client(server, client, app, files):
    async with AsyncMagpie(server.url, access_key=app.access_key, secret_key=app.secret_key,
                           app_key=app.app_key) as c:
        assert (await c.app_info()).app_id == app.app_id
        results = await asyncio.gather(c.search("s1", limit=3), c.recommendation("s1", limit=3),
                                       c.uploadsearch(ITEMS[6]["image"], limit=1),
                                       c.colorsearch(["1428d2:80", "ffffff:20"], limit=1))
        assert results[2].im_names == ["s6"] and results[3].im_names == ["swatch-blue"]
        rows = [{"im_name": f"async{i}", "im_url": f"{files}/bulk{i}.png", "brand": "Async"} for i in range(5)]
        result = await c.bulk_insert(rows, progress=False, chunk_size=2)
        assert result.success_count == 5 and len(result.trans_ids) == 3 and result.ok
        assert (await c.search("async1", fq={"brand": "Async"})).total == 4
        tracked = await c.track_batch([{"action": "product_view", "query_id": results[0].reqid,
                                        "pid": "s2", "pos": 1}])
        assert tracked.status == "OK" and list(tracked.accepted) == [0]
        with pytest.raises(NotFoundError):
            await c.recommendation("nope")
    async with AsyncMagpie(server.url) as a:
        await a.admin.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        assert app.app_id in [x.app_id for x in await a.admin.apps()]


def test_sdk_has_no_server_dependency():
    # The SDK is its own package: importing it must not pull in the server or torch.
    import subprocess
    import sys
    code = ("import sys, magpie_sdk; bad = [m for m in ('magpie', 'torch', 'fastapi') if m in sys.modules];"
            "sys.exit(str(bad) if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
