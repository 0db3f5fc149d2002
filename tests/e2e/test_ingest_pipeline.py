"""Insert → fetch → embed → index through a real server, driven by the official SDK."""
import time

import httpx
import pytest
from visearch import client as visearch

from tests.fixtures.images import serve
from tests.fixtures.server import new_application

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def images():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def app(server):
    return new_application(server.url, "Pipeline", [
        {"name": "brand", "type": "string", "searchable": True},
        {"name": "price", "type": "float", "searchable": True},
        {"name": "notes", "type": "text"}])


@pytest.fixture(scope="module")
def sdk(server, app):
    return visearch.ViSearchAPI(app["access_key"], app["secret_key"], host=f"{server.url}/")


def wait_done(sdk, trans_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sdk.insert_status(trans_id, error_limit=50)
        assert status["status"] == "OK", status
        result = status["result"][0]
        if result["processed_percent"] == 100:
            return result
        time.sleep(0.2)
    raise AssertionError(f"transaction {trans_id} not done in {timeout}s: {result}")


def item(server, app, name):
    return httpx.get(f"{server.url}/v1/items/{name}", auth=(app["access_key"], app["secret_key"]))


def test_sdk_insert_reports_each_item_and_indexes_the_good_ones(server, app, sdk, images):
    resp = sdk.insert([
        {"im_name": "shoe-png", "im_url": f"{images}/ok/a.png", "brand": "Nike", "price": "49.99", "colour": "red"},
        {"im_name": "shoe-webp", "im_url": f"{images}/ok/b.webp", "brand": "Puma"},
        {"im_name": "shoe-tiff", "im_url": f"{images}/ok/c.tiff"},
        {"im_name": "small", "im_url": f"{images}/small"},
        {"im_name": "missing", "im_url": f"{images}/404"},
        {"im_name": "html", "im_url": f"{images}/notimage"},
        {"im_name": "tiny", "im_url": f"{images}/tiny"},
        {"im_name": "badprice", "im_url": f"{images}/ok/d.png", "price": "cheap"},
    ])
    assert resp["status"] == "warning" and resp["total"] == 7
    assert [(e["im_name"], e["error_code"]) for e in resp["error"]] == [("badprice", 109)]
    result = wait_done(sdk, resp["trans_id"])
    assert (result["total"], result["success_count"], result["fail_count"]) == (7, 4, 3)
    assert sorted((e["im_name"], e["error_code"]) for e in result["error_list"]) == [
        ("html", 202), ("missing", 201), ("tiny", 203)]
    got = item(server, app, "shoe-png").json()["result"][0]
    assert got["value_map"] == {"brand": "Nike", "price": 49.99} and got["model"].startswith("efficientnet-lite0")
    assert got["im_url"] == f"{images}/ok/a.png" and len(got["colors"]) >= 1
    assert item(server, app, "missing").status_code == 404


def test_metadata_update_does_not_download_again(server, app, sdk, images):
    hits = images.state.hits["/ok/a.png"]
    resp = sdk.update({"im_name": "shoe-png", "price": "39.5"})
    assert resp["status"] == "OK"
    wait_done(sdk, resp["trans_id"])
    assert item(server, app, "shoe-png").json()["result"][0]["value_map"]["price"] == 39.5
    assert images.state.hits["/ok/a.png"] == hits


def test_update_of_unknown_item_needs_an_url(sdk):
    resp = sdk.update({"im_name": "never-seen", "price": "1"})
    assert resp["status"] == "fail" and resp["error"][0]["error_code"] == 108


def test_reinsert_with_etag_is_a_conditional_get(server, app, sdk, images):
    for _ in range(2):
        resp = sdk.insert({"im_name": "etagged", "im_url": f"{images}/etag", "brand": "A"})
        result = wait_done(sdk, resp["trans_id"])
        assert result["success_count"] == 1
    assert images.state.hits["/etag"] == 2  # the second one answered 304, no body


def test_remove_and_unknown_names(server, app, sdk):
    resp = sdk.remove(["shoe-webp", "nope"])
    assert resp["status"] == "warning" and resp["total"] == 1
    assert resp["error"] == [{"index": 1, "im_name": "nope", "error_code": 102,
                              "error_message": "Image not found with im_name."}]
    wait_done(sdk, resp["trans_id"])
    assert item(server, app, "shoe-webp").status_code == 404


def test_data_api_limits_and_auth(server, app, sdk):
    too_many = sdk.insert([{"im_name": f"n{i}", "im_url": "http://example.com/x.jpg"} for i in range(101)])
    assert too_many["status"] == "fail" and too_many["error"][0]["error_code"] == 103
    empty = httpx.post(f"{server.url}/insert", data={"x": "1"}, auth=(app["access_key"], app["secret_key"]))
    assert empty.status_code == 200 and empty.json()["error"][0]["error_code"] == 104
    search_only = httpx.post(f"{server.url}/insert", data={"im_name[0]": "a", "im_url[0]": "http://e.com/a.jpg",
                                                          "access_key": app["app_key"]})
    assert search_only.status_code == 403 and search_only.json()["status"] == "fail"
    unknown = sdk.insert_status(12345)
    assert unknown["status"] == "fail" and unknown["error"][0]["error_code"] == 101
    junk = httpx.get(f"{server.url}/insert/status/abc", auth=(app["access_key"], app["secret_key"]))
    assert junk.json()["error"][0]["error_code"] == 101


def test_json_api_twins(server, app, images):
    auth = (app["access_key"], app["secret_key"])
    r = httpx.post(f"{server.url}/v1/items", auth=auth, json={"items": [
        {"im_name": "json-1", "im_url": f"{images}/ok/x.jpg", "price": 5}, {"im_name": "json-2"}]})
    body = r.json()
    assert r.status_code == 200 and body["total"] == 1 and body["error"][0]["error_code"] == 108
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = httpx.get(f"{server.url}/v1/transactions/{body['trans_id']}", auth=auth).json()["result"][0]
        if st["processed_percent"] == 100:
            break
        time.sleep(0.2)
    assert st["success_count"] == 1
    listed = httpx.get(f"{server.url}/v1/transactions", auth=auth).json()["result"]
    assert listed[0]["trans_id"] == body["trans_id"]


def test_usage_counts_api_calls_per_endpoint_and_stored_bytes(server, images):
    own = new_application(server.url, "Usage", [])  # its own counts, whatever ran before
    client = visearch.ViSearchAPI(own["access_key"], own["secret_key"], host=f"{server.url}/")
    trans = [client.insert([{"im_name": f"u{i}", "im_url": f"{images}/ok/a.png"}])["trans_id"] for i in range(5)]
    status_calls = 0
    for t in trans:
        while client.insert_status(t)["result"][0]["processed_percent"] < 100:
            status_calls += 1
            time.sleep(0.2)
        status_calls += 1
    client.remove(["u0"])
    want = {"/insert": 5, "/insert/status/{trans_id}": status_calls, "/remove": 1}

    # Counts reach the store in periodic flushes: an early flush may hold only part of them.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/v1/usage", auth=(own["access_key"], own["secret_key"])).json()
        if all(body["totals"]["api_calls"].get(k, 0) >= n for k, n in want.items()):
            break
        time.sleep(0.5)
    calls = body["totals"]["api_calls"]
    assert {k: calls.get(k) for k in want} == want
    assert body["by_day"][-1]["api_calls"]["/insert"] == 5
    assert body["stored_bytes"] > 1000  # images, thumbnails and vectors of the indexed items
