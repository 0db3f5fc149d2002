"""The official ViSearch JavaScript SDK (npm `visearch-javascript-sdk`, unmodified) under
Node against a live server, only the host changed: search, upload search by file, im_id and
URL, recommendations, colour search, an error, and its click pixel reaching the report.

Pinned to 1.5.2, the last release of the ViSearch API client (`/search`, `/uploadsearch`,
`/recommendation`, `/colorsearch`, app key as `access_key`); 5.x is a different product (the
ProductSearch API, `/v1/product/...`), which Magpie does not implement.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.js.shop import HERE, ITEMS, brand_of, load_shop, node, report, serve_shop_images

pytestmark = pytest.mark.e2e
PACKAGE, VERSION = "visearch-javascript-sdk", "1.5.2"
NPM_CACHE = Path(os.environ.get("MAGPIE_NPM_CACHE") or Path.home() / ".cache" / "magpie" / "npm")


def installed_sdk() -> Path:
    """The package folder, installed with npm into the cache on first use (make install-test
    does the same)."""
    prefix = NPM_CACHE / f"{PACKAGE}-{VERSION}"
    folder = prefix / "node_modules" / PACKAGE
    if not (folder / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (make system-deps installs it)")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                        "--loglevel=error", f"{PACKAGE}@{VERSION}"], check=True, timeout=300)
    assert json.loads((folder / "package.json").read_text())["version"] == VERSION
    return folder


@pytest.fixture(scope="module")
def files():
    with serve_shop_images() as url:
        yield url


@pytest.fixture(scope="module")
def shop(server, files):
    return load_shop(server.url, files, "https://shop.example/product", name="ViSearch JS")


@pytest.fixture(scope="module")
def run(server, shop, files, tmp_path_factory):
    """The scenario's report (tests/e2e/js/visearch_compat.cjs)."""
    exe = node()
    if exe is None:
        pytest.skip("Node 20+ is not installed (make system-deps installs nodejs)")
    sdk = installed_sdk()
    folder = tmp_path_factory.mktemp("visearch-js")
    image, out = folder / "query.png", folder / "out.json"
    image.write_bytes(next(it["image"] for it in ITEMS if it["im_name"] == "s5"))
    env = {"VISEARCH_SDK": str(sdk), "MAGPIE_HOST": server.url, "APP_KEY": shop["app_key"],
           "IMAGE_PATH": str(image), "IMAGES_URL": files, "OUT_PATH": str(out), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([exe, str(HERE / "visearch_compat.cjs")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_search_by_im_name_with_fields_and_filter(run):
    r = run["search"]
    assert r["status"] == "OK" and r["method"] == "search" and r["reqid"]
    assert r["result"] and all(brand_of(i["im_name"]) in ("Nike", "Adidas") for i in r["result"])
    assert all(set(i["value_map"]) == {"brand", "price"} and "score" in i for i in r["result"])


def test_uploadsearch_by_file_im_id_and_url(run):
    up = run["uploadFile"]
    assert up["status"] == "OK" and up["result"][0]["im_name"] == "s5" and up["im_id"]
    page2 = run["uploadPage2"]
    assert page2["status"] == "OK" and page2["page"] == 2 and page2["total"] == up["total"]
    assert not {i["im_name"] for i in page2["result"]} & {i["im_name"] for i in up["result"]}
    assert run["uploadUrl"]["status"] == "OK" and run["uploadUrl"]["result"][0]["im_name"] == "s6"


def test_recommendation_colorsearch_and_an_error(run):
    names = [i["im_name"] for i in run["recommendation"]["result"]]
    assert run["recommendation"]["method"] == "recommendation" and names and "s0" not in names
    assert run["color"]["status"] == "OK" and run["color"]["result"][0]["im_name"] == "swatch-red"
    unknown = run["unknown"]
    assert unknown["status"] == "fail" and unknown["error"] == ["Image not found with im_name."]
    assert unknown["reqid"]  # the SDK reads it from X-Log-ID, which CORS exposes to browsers too


def test_the_sdk_click_pixel_reaches_the_report(run, server, shop):
    clicked = run["search"]["result"][0]["im_name"]
    body = report(server.url, shop, lambda b: b["totals"]["clicks"] >= 1 and b["totals"]["searches"] >= 6)
    assert body["totals"]["clicks"] == 1 and body["top_products"][0]["pid"] == clicked
    # The six searches that answered OK (a failed one serves nothing); one was clicked.
    assert body["totals"]["searches"] == 6 and body["totals"]["ctr"] == round(1 / 6, 4)
