"""The search API through a real server: the official visearch SDK, a browser-style app-key
request, bad inputs, and served searches reaching analytics."""
import time
from datetime import UTC, datetime

import httpx
import pytest
from visearch import client as visearch

from tests.fixtures.catalog import catalog, serve_files
from tests.fixtures.images import HTML
from tests.fixtures.server import new_application

pytestmark = pytest.mark.e2e
ITEMS = catalog(12)


@pytest.fixture(scope="module")
def files():
    with serve_files({f"{it['im_name']}.png": it["image"] for it in ITEMS} | {"page.html": HTML}) as url:
        yield url


@pytest.fixture(scope="module")
def app(server):
    return new_application(server.url, "Search", [
        {"name": "brand", "type": "string", "searchable": True},
        {"name": "price", "type": "float", "searchable": True},
        {"name": "stock", "type": "int", "searchable": True},
        {"name": "title", "type": "text", "searchable": True},
        {"name": "sku", "type": "string"}])


@pytest.fixture(scope="module")
def sdk(server, app, files):
    api = visearch.ViSearchAPI(app["access_key"], app["secret_key"], host=f"{server.url}/")
    rows = [{k: str(it[k]) for k in ("im_name", "brand", "price", "stock", "title", "sku")}
            | {"im_url": f"{files}/{it['im_name']}.png"} for it in ITEMS]
    trans_id = api.insert(rows)["trans_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = api.insert_status(trans_id)["result"][0]
        if status["processed_percent"] == 100:
            break
        time.sleep(0.2)
    assert status["success_count"] == len(ITEMS), status
    return api


def test_sdk_search_with_fields_filters_and_scores(sdk):
    r = sdk.search("s4", fl=["brand", "price", "title"], fq={"brand": "Nike OR nike"}, score=True, limit=5)
    assert r["status"] == "OK" and r["method"] == "search" and r["error"] == [] and r["page"] == 1
    nikes = sum(it["brand"] in ("Nike", "nike") for it in ITEMS) - 1  # not s4 itself
    assert len(r["result"]) == 5 and r["total"] == nikes and r["reqid"]
    for item in r["result"]:
        assert item["im_name"] != "s4" and 0.0 <= item["score"] <= 1.0
        assert set(item["value_map"]) == {"brand", "price"}  # the text field never comes back
        assert item["value_map"]["brand"] in ("Nike", "nike") and item["value_map"]["price"].endswith("0000")


def test_sdk_uploadsearch_by_file_then_pages_by_im_id(sdk, server, app, tmp_path):
    path = tmp_path / "query.png"
    path.write_bytes(ITEMS[7]["image"])
    r = sdk.uploadsearch(image_path=str(path), limit=3, score=True)
    assert r["status"] == "OK" and r["result"][0]["im_name"] == "s7" and r["result"][0]["score"] > 0.99
    assert r["im_id"].endswith(".jpg")
    page2 = httpx.post(f"{server.url}/uploadsearch", auth=(app["access_key"], app["secret_key"]),
                       data={"im_id": r["im_id"], "limit": "3", "page": "2"}).json()
    assert page2["status"] == "OK" and page2["im_id"] == r["im_id"] and page2["total"] == r["total"]
    assert not {i["im_name"] for i in page2["result"]} & {i["im_name"] for i in r["result"]}
    boxed = sdk.uploadsearch(image_path=str(path), box=(0, 0, 100, 90), score=True)
    assert boxed["status"] == "OK" and boxed["result"][0]["score"] < 0.99


def test_sdk_uploadsearch_by_url(sdk, files):
    r = sdk.uploadsearch(image_url=f"{files}/s9.png?size=full&x=1", limit=3)
    assert r["status"] == "OK" and r["result"][0]["im_name"] == "s9", r


def test_sdk_recommendation_leaves_out_the_item_and_its_near_duplicate(sdk):
    similar = sdk.search("s0", limit=20)
    r = sdk.recommendation("s0", limit=20, fl=["brand"])
    names = [i["im_name"] for i in r["result"]]
    assert r["status"] == "OK" and r["method"] == "recommendation" and names
    assert similar["result"][0]["im_name"] == "s0-copy" and "s0-copy" not in names and "s0" not in names
    assert len({"s1", "s1-twin"} & set(names)) <= 1


def test_sdk_colorsearch(sdk):
    for color, first in (("dc141e", "swatch-red"), ("#1428d2", "swatch-blue")):
        r = sdk.colorsearch(color, limit=3, score=True)
        assert r["status"] == "OK" and r["result"][0]["im_name"] == first, r


def test_browser_style_request_with_the_app_key(server, app):
    r = httpx.get(f"{server.url}/search", params={"access_key": app["app_key"], "im_name": "s2",
                                                  "facets": "brand,price", "qinfo": "true", "fl": "sku"})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "OK" and body["reqid"] == r.headers["x-log-id"]
    assert {f["key"] for f in body["facets"]} == {"brand", "price"}
    assert body["qinfo"]["sku"] == "SKU-2" and body["qinfo"]["im_url"].endswith("/s2.png")
    rec = httpx.get(f"{server.url}/recommendations", params={"access_key": app["app_key"], "im_name": "s2"})
    assert rec.json()["method"] == "recommendations" and rec.json()["result"]
    assert httpx.get(f"{server.url}/search", params={"access_key": "nope", "im_name": "s2"}).status_code == 401


@pytest.mark.parametrize(("method", "path", "params", "error"), [
    ("GET", "/search", {"im_name": "nope"}, "Image not found with im_name."),
    ("GET", "/search", {}, "im_name is invalid."),
    ("POST", "/uploadsearch", {"im_url": "{files}/page.html"}, "Invalid image or im_url: content is HTML"),
    ("POST", "/uploadsearch", {"im_url": "{files}/missing.png"}, "Invalid image or im_url: im_url answered HTTP 404"),
    ("GET", "/uploadsearch", {"im_url": "ftp://x/y.png"}, "Invalid image or im_url: im_url scheme"),
    ("POST", "/uploadsearch", {}, "Missing im_url or im_id."),
    ("POST", "/uploadsearch", {"im_id": "20200101" + "a" * 32 + ".jpg"}, "Missing im_id: it has expired"),
    ("GET", "/search", {"im_name": "s1", "fq": "sku:SKU-1"}, "fq 'sku:SKU-1': sku is not searchable"),
    ("GET", "/search", {"im_name": "s1", "fq": "price:9,1"}, "the range's min is above its max"),
    ("GET", "/search", {"im_name": "s1", "fq": 'brand:"Nike'}, "double quote is not closed"),
    ("GET", "/search", {"im_name": "s1", "limit": "1001"}, "limit must be between 1 and 1000."),
    ("GET", "/search", {"im_name": "s1", "page": "3", "limit": "500"}, "page*limit must be at most 1000"),
    ("GET", "/search", {"im_name": "s1", "score_min": "0.9", "score_max": "0.1"}, "score_min must be no more"),
    ("GET", "/search", {"im_name": "s1", "score": "perhaps"}, "score must be false or true."),
    ("GET", "/search", {"im_name": "s1", "facets": "title"}, "title is a text field"),
    ("GET", "/colorsearch", {"color": "reddish"}, "color is invalid."),
    ("GET", "/search", {"im_name": "s1", "sort_by": "price:sideways"}, "must look like field:asc"),
    ("GET", "/search", {"im_name": "s1", "group_by": "title"}, "group_by: title is a text field"),
    ("POST", "/uploadsearch", {"im_url": "{files}/s1.png", "detection": "all"}, "needs an object detector"),
    ("POST", "/discoversearch", {"im_url": "{files}/s1.png"}, "use uploadsearch, with box="),
    ("GET", "/match", {"im_name": "s1"}, "multi-object index"),
])
def test_bad_inputs_fail_with_http_200_and_a_message(server, app, sdk, files, method, path, params, error):
    params = {k: v.format(files=files) for k, v in params.items()}
    r = httpx.request(method, f"{server.url}{path}", auth=(app["access_key"], app["secret_key"]),
                      **({"data": params} if method == "POST" else {"params": params}))
    body = r.json()
    assert r.status_code == 200 and body["status"] == "fail", body
    assert error in body["error"][0], body["error"]
    assert body["result"] == [] and r.headers["x-log-id"]


def test_sort_and_group_over_http(server, app):
    base = {"access_key": app["app_key"], "im_name": "s2", "fl": "price", "limit": "5"}
    body = httpx.get(f"{server.url}/search", params={**base, "sort_by": "price:asc"}).json()
    prices = [float(r["value_map"]["price"]) for r in body["result"]]
    assert body["status"] == "OK" and prices == sorted(prices) and len(prices) == 5
    body = httpx.get(f"{server.url}/search", params={**base, "group_by": "brand"}).json()
    assert body["group_by_key"] == "brand" and body["total"] == len(body["group_results"])
    assert [g["result"][0]["im_name"] for g in body["group_results"]] == [r["im_name"] for r in body["result"]]


def test_undecodable_upload_is_1102(server, app):
    r = httpx.post(f"{server.url}/uploadsearch", auth=(app["access_key"], app["secret_key"]),
                   files={"image": ("x.jpg", HTML, "image/jpeg")})
    assert r.status_code == 200 and r.json()["error"][0].startswith("Invalid image file format")
    big = httpx.post(f"{server.url}/uploadsearch", auth=(app["access_key"], app["secret_key"]),
                     files={"image": ("x.jpg", b"\xff" * (10 * 2**20 + 1), "image/jpeg")})
    assert big.status_code == 200 and "larger than 10 MB" in big.json()["error"][0]


def test_served_searches_reach_analytics(server, app, sdk):
    sdk.search("s3", va_uid="shopper-1", va_sid="session-1")
    auth, today = (app["access_key"], app["secret_key"]), datetime.now(UTC).date().isoformat()
    deadline = time.monotonic() + 15
    while True:  # served searches travel over the bus and a buffered writer
        report = httpx.get(f"{server.url}/v1/analytics/report", auth=auth,
                           params={"from": today, "to": today}).json()
        if report["totals"]["searches"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert report["totals"]["searches"] > 0 and report["totals"]["results_served"] > 0
    usage = httpx.get(f"{server.url}/v1/usage", auth=auth, params={"from": today, "to": today}).json()
    assert usage["totals"]["searches"].get("search", 0) > 0
