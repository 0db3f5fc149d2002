"""Tracking and analytics over real HTTP against `magpie serve` (chdb on disk, in-process bus)."""
import io
import time

import httpx
import pytest

from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e
TS = 1_718_000_000_000  # 2024-06-10
JUNE = {"from": "2024-06-01", "to": "2024-06-30"}


@pytest.fixture(scope="module")
def shop(server):
    token = httpx.post(f"{server.url}/admin/v1/sessions",
                       json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["token"]
    r = httpx.post(f"{server.url}/admin/v1/apps", json={"name": "Tracked"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    return r.json()


def _report(server, auth, clicks, timeout=15):
    deadline = time.monotonic() + timeout
    while True:  # events travel over the bus and a buffered writer before they count
        body = httpx.get(f"{server.url}/v1/analytics/report", params=JUNE, auth=auth).json()
        if body["totals"]["clicks"] >= clicks or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_pixel_and_batch_events_reach_the_report_once(server, shop):
    key, auth = shop["app_key"], (shop["access_key"], shop["secret_key"])
    click = {"code": key, "action": "product_click", "queryId": "q1", "pid": "sku-1", "pos": "3",
             "uid": "u1", "ts": str(TS)}
    for _ in range(2):  # a re-sent beacon: the same event, counted once
        r = httpx.get(f"{server.url}/v3/__va.gif", params=click)
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    bad = httpx.get(f"{server.url}/v3/__va.gif", params={"code": key, "action": "add_to_cart"})
    assert bad.status_code == 200 and bad.headers["x-tracking"] == "rejected"
    batch = {"uid": "u1", "events": [
        {"action": "add_to_cart", "queryId": "q1", "pid": "sku-1", "ts": TS + 1},
        {"action": "transaction", "queryId": "q1", "value": 99.0, "currency": "USD", "ts": TS + 2},
        {"action": "transaction", "queryId": "q1", "ts": TS + 3},
    ]}
    r = httpx.post(f"{server.url}/v3/events", params={"code": key}, json=batch).json()
    assert r["status"] == "warning" and [e["index"] for e in r["error"]] == [2]

    report = _report(server, auth, clicks=1)
    t = report["totals"]
    assert (t["clicks"], t["add_to_carts"], t["transactions"], t["searches"], t["ctr"]) == (1, 1, 1, 0, None)
    assert report["click_rank"] == 3.0 and report["revenue"][0] == {"currency": "USD", "transactions": 1,
                                                                     "revenue": 99.0}
    assert httpx.get(f"{server.url}/v1/analytics/report", params={"access_key": key}).status_code == 403


def test_exports_and_usage(server, shop):
    import pyarrow.parquet as pq

    auth = (shop["access_key"], shop["secret_key"])
    _report(server, auth, clicks=1)
    with httpx.stream("GET", f"{server.url}/v1/analytics/events.csv", params=JUNE, auth=auth) as r:
        lines = b"".join(r.iter_bytes()).decode().splitlines()
    assert r.status_code == 200 and lines[0].startswith('"action","event_id"') and len(lines) == 4
    parquet = httpx.get(f"{server.url}/v1/analytics/events.parquet", params=JUNE, auth=auth)
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 3
    usage = httpx.get(f"{server.url}/v1/usage", params=JUNE, auth=auth).json()
    assert usage["totals"]["events"] == {"add_to_cart": 1, "product_click": 1, "transaction": 1}
