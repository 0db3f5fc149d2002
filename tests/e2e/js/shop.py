"""The test shop of the JavaScript SDK and widget tests: an application with a product schema
and a small generated catalog (tests/fixtures/catalog.py), loaded over the real Data API."""
from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from tests.fixtures.catalog import catalog, serve_files
from tests.fixtures.server import new_application, wait_transaction

HERE = Path(__file__).resolve().parent
ITEMS = catalog(8)  # 8 scenes, a near-duplicate, a byte-identical twin, 3 colour swatches
FIELDS = [{"name": "brand", "type": "string", "searchable": True},
          {"name": "price", "type": "float", "searchable": True},
          {"name": "title", "type": "string"},
          {"name": "product_url", "type": "string"}]


def brand_of(im_name: str) -> str:
    """The catalog brand of an item."""
    return next(it["brand"] for it in ITEMS if it["im_name"] == im_name)


def serve_shop_images() -> AbstractContextManager[str]:
    """Serve every item's image as /<im_name>.png on a loopback port; yields the base URL."""
    return serve_files({f"{it['im_name']}.png": it["image"] for it in ITEMS})


def load_shop(server_url: str, images_url: str, product_base: str, name: str = "JS shop") -> dict:
    """Create the application, insert every item (product_url = product_base?sku=NAME) and
    wait until all are indexed; the application's keys."""
    app = new_application(server_url, name, FIELDS)
    form: dict[str, str] = {}
    for i, it in enumerate(ITEMS):
        form |= {f"im_name[{i}]": it["im_name"], f"im_url[{i}]": f"{images_url}/{it['im_name']}.png",
                 f"brand[{i}]": it["brand"], f"price[{i}]": str(it["price"]),
                 f"title[{i}]": f"{it['title']} {it['im_name']}",
                 f"product_url[{i}]": f"{product_base}?sku={it['im_name']}"}
    auth = (app["access_key"], app["secret_key"])
    r = httpx.post(f"{server_url}/insert", data=form, auth=auth, timeout=30).json()
    assert r["status"] == "OK", r
    status = wait_transaction(server_url, auth, r["trans_id"])
    assert status["success_count"] == len(ITEMS), status
    return app


def node() -> str | None:
    """The node executable (Node 20 or later), or None."""
    path = shutil.which("node")
    if path is None:
        return None
    major = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return path if major.startswith("v") and int(major[1:].split(".")[0]) >= 20 else None


def report(server_url: str, app: dict, until, solution: str = "", timeout: float = 20) -> dict:
    """The analytics report of today, polled until `until(report)` holds (events travel over
    the bus and a buffered writer before they count) or the timeout passes."""
    deadline = time.monotonic() + timeout
    params = {"solution": solution} if solution else {}
    while True:
        body = httpx.get(f"{server_url}/v1/analytics/report", params=params,
                         auth=(app["access_key"], app["secret_key"])).json()
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.25)
