"""The Magpie JavaScript SDK (sdk/js/magpie-sdk.js) under Node 20 against a live server:
search, upload search by file, im_id and URL, recommendations, colour search, errors, and
tracking through the batch endpoint, checked in the analytics report and the raw events."""
import csv
import io
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.js.shop import HERE, ITEMS, brand_of, load_shop, node, report, serve_shop_images

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files():
    with serve_shop_images() as url:
        yield url


@pytest.fixture(scope="module")
def shop(server, files):
    return load_shop(server.url, files, "https://shop.example/product")


@pytest.fixture(scope="module")
def run(server, shop, files, tmp_path_factory):
    """The Node scenario's report (tests/e2e/js/sdk_scenario.mjs)."""
    exe = node()
    if exe is None:
        pytest.skip("Node 20+ is not installed (make system-deps installs nodejs)")
    image = tmp_path_factory.mktemp("sdk") / "query.png"
    image.write_bytes(next(it["image"] for it in ITEMS if it["im_name"] == "s5"))
    env = {"MAGPIE_SDK": str(ROOT / "sdk" / "js" / "magpie-sdk.js"), "MAGPIE_HOST": server.url,
           "APP_KEY": shop["app_key"], "ACCESS_KEY": shop["access_key"], "SECRET_KEY": shop["secret_key"],
           "IMAGE_PATH": str(image), "IMAGES_URL": files, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([exe, str(HERE / "sdk_scenario.mjs")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_search_with_fields_filter_and_scores(run):
    r = run["search"]
    wanted = {"Women's shoes", "Nike"}
    expected = sum(it["brand"] in wanted for it in ITEMS if it["im_name"] != "s3")
    assert r["status"] == "OK" and r["method"] == "search" and r["total"] == expected
    assert r["result"] and all(it["value_map"]["brand"] in wanted for it in r["result"])
    assert all("s3" != it["im_name"] and 0 <= it["score"] <= 1 for it in r["result"])
    assert set(r["result"][0]["value_map"]) == {"brand", "price", "title"}


def test_upload_search_by_file_pages_by_im_id_and_by_url(run):
    up = run["upload"]
    assert up["status"] == "OK" and up["result"][0]["im_name"] == "s5"
    scores = [i["score"] for i in up["result"]]
    assert scores == sorted(scores, reverse=True)
    assert {f["key"] for f in up["facets"]} == {"brand", "price"} and up["im_id"]
    page2 = run["uploadPage2"]
    assert page2["page"] == 2 and page2["total"] == up["total"] and page2["im_id"] == up["im_id"]
    assert not {i["im_name"] for i in page2["result"]} & {i["im_name"] for i in up["result"]}
    assert run["byUrl"]["result"][0]["im_name"] == "s6"


def test_recommendation_colour_search_and_errors(run):
    names = [i["im_name"] for i in run["recommendation"]["result"]]
    assert names and "s0" not in names and "s0-copy" not in names
    assert run["color"]["result"][0]["im_name"] == "swatch-red"
    assert run["lastQueryId"] == run["color"]["reqid"]
    assert run["fullKeys"]["status"] == "OK" and len(run["fullKeys"]["result"]) == 2
    unknown = run["unknown"]
    assert unknown["isMagpieError"] and unknown["message"] == "Image not found with im_name." and unknown["reqid"]
    assert run["noPid"] == "pid is required for product_click"


def test_tracking_batch_reaches_the_report_with_uid_and_sid(run, server, shop):
    assert len(run["uid"]) == 32 and len(run["sid"]) == 32
    assert run["pendingBeforeFlush"] == 6
    answer = run["flush"]
    assert answer["status"] == "OK" and [e["index"] for e in answer["result"]] == list(range(6))
    # A full batch is sent at once; a partial one when flushIntervalMs has passed.
    assert (run["pendingAfterOne"], run["pendingAfterTwo"], run["pendingAfterInterval"]) == (1, 0, 0)
    body = report(server.url, shop, lambda b: b["totals"]["transactions"] >= 1)
    t = body["totals"]
    assert (t["views"], t["clicks"], t["add_to_carts"], t["transactions"]) == (3, 1, 1, 1)
    assert body["revenue"] == [{"currency": "EUR", "transactions": 1, "revenue": 25.0}]
    clicked = run["search"]["result"][1]["im_name"]
    assert body["top_products"] == [{"pid": clicked, "clicks": 1, "avg_pos": 2.0}]
    assert brand_of(clicked) in ("Women's shoes", "Nike")
    # Served searches count too: the SDK's searches and upload searches.
    assert t["searches"] >= 6 and t["ctr"] is not None
    events = httpx.get(f"{server.url}/v1/analytics/events.csv",
                       auth=(shop["access_key"], shop["secret_key"])).text
    rows = list(csv.DictReader(io.StringIO(events)))
    assert len(rows) == 9  # 6 + the 3 search events of the batching client
    assert {(r["uid"], r["sid"]) for r in rows} == {(run["uid"], run["sid"])}


def test_the_package_exports_the_sdk_by_its_name():
    exe = node()
    if exe is None:
        pytest.skip("Node 20+ is not installed (make system-deps installs nodejs)")
    package = json.loads((ROOT / "sdk" / "js" / "package.json").read_text())
    assert package["name"] == "magpie-visual-search" and package["type"] == "module"
    # A package may import itself by name through its "exports" map: what users get.
    done = subprocess.run([exe, "--input-type=module", "-e",
                           "const m = await import('magpie-visual-search');"
                           "console.log(JSON.stringify([m.VERSION, typeof m.createClient]))"],
                          cwd=ROOT / "sdk" / "js", capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [package["version"], "function"]
