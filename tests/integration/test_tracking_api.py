"""Tracking, report, export and usage routes in-process (ASGI), with the analytics store and
handlers wired the way bootstrap wires them, the real chdb engine and the in-process bus."""
import asyncio
import io
import json
import time

import httpx
import pytest
from pydantic import SecretStr

from magpie.analytics import bootstrap as analytics
from magpie.analytics.store.chdb_store import ChdbAnalyticsStore
from magpie.common.events.analytics import SearchServed
from magpie.common.settings import Settings
from magpie.gateway import bootstrap
from magpie.gateway.api import reports as report_routes
from magpie.gateway.api import tracking
from magpie.gateway.app import create_app

pytestmark = pytest.mark.integration
EMAIL, PASSWORD = "owner@example.com", "tracking-test-password"
JUNE = {"from": "2024-06-01", "to": "2024-06-30"}


@pytest.fixture
async def api(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", admin_email=EMAIL, admin_password=SecretStr(PASSWORD),
                        bus_retry_backoff_s=0)
    store = None
    if "analytics" not in bootstrap.Container.__dataclass_fields__:
        # Until bootstrap wires analytics itself, wire it here exactly as it will.
        store = ChdbAnalyticsStore(settings.data_dir / "analytics", flush_interval_s=0.05)
        await store.start()
        wire = bootstrap.wire_subscribers

        def wire_with_analytics(c):
            wire(c)
            c.analytics = store
            analytics.subscribe(c.bus, store)

        monkeypatch.setattr(bootstrap, "wire_subscribers", wire_with_analytics)
    app = create_app(settings)
    if "/v3/__va.gif" not in {getattr(r, "path", "") for r in app.routes}:
        app.include_router(tracking.router)
        app.include_router(report_routes.router)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://magpie") as client:
            client.app = app
            yield client
    finally:
        if store is not None:
            await store.stop()


async def _shop(client):
    signed_in = await client.post("/admin/v1/sessions", json={"email": EMAIL, "password": PASSWORD})
    token = signed_in.json()["token"]
    admin = {"Authorization": f"Bearer {token}"}
    r = await client.post("/admin/v1/apps", json={"name": "Shop"}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json(), admin


async def _report(client, auth, want_clicks, **params):
    deadline = time.monotonic() + 10
    while True:  # the bus delivers asynchronously
        r = await client.get("/v1/analytics/report", params=params, auth=auth)
        assert r.status_code == 200, r.text
        if r.json()["totals"]["clicks"] >= want_clicks or time.monotonic() > deadline:
            return r.json()
        await asyncio.sleep(0.05)


async def test_track_then_report_export_and_usage(api):
    shop, admin = await _shop(api)
    key, auth, ts = shop["app_key"], (shop["access_key"], shop["secret_key"]), 1_718_000_000_000
    pixel = await api.get("/v3/__va.gif", params={"code": key, "action": "product_click", "queryId": "q1",
                                                  "pid": "a", "pos": "2", "uid": "u1", "ts": str(ts)})
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert pixel.content.startswith(b"GIF89a") and pixel.headers["x-tracking"] == "accepted"
    for params, reason in (({"code": "nope", "action": "product_click"}, "Invalid access key"),
                           ({"code": key, "action": "product_click", "queryId": "q1"}, "pid is required"),
                           ({"code": key, "action": "view", "currency": "\r\n€"}, "not an ISO 4217 code")):
        bad = await api.get("/v3/__va.gif", params=params)
        assert bad.status_code == 200 and bad.content.startswith(b"GIF89a")
        assert bad.headers["x-tracking"] == "rejected" and reason in bad.headers["x-tracking-error"]
    legacy = await api.get("/__aq.gif", params={"cid": key, "reqid": "q1", "im_name": "b"})
    assert legacy.headers["x-tracking"] == "accepted"

    batch = {"uid": "u1", "events": [
        {"action": "product_view", "queryId": "q1", "pid": "a", "ts": ts},
        {"action": "product_click", "queryId": "q1", "pid": "a", "pos": 0, "ts": ts},
        {"action": "transaction", "queryId": "q1", "value": 42.5, "currency": "eur", "ts": ts},
    ]}
    r = await api.post("/v3/events", params={"code": f"{key}:widget-1"}, json=batch)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "warning" and len(body["reqid"]) == 32
    assert [x["index"] for x in body["result"]] == [0, 2] and body["error"][0]["index"] == 1
    assert "pos must be" in body["error"][0]["error_message"]
    assert (await api.post("/v3/events", params={"code": "nope"}, json=batch)).status_code == 401
    too_many = await api.post("/v3/events", params={"code": key}, json={"events": [{}] * 1001})
    assert too_many.status_code == 400 and too_many.json()["status"] == "fail"
    assert (await api.post("/v3/events", params={"code": key}, content=b"{oops")).status_code == 400

    await api.app.state.container.bus.publish(
        SearchServed(app_id=shop["app_id"], reqid="q1", method="search", result_count=10, ts=ts))
    report = await _report(api, auth, want_clicks=1, **JUNE)
    t = report["totals"]
    assert (t["searches"], t["views"], t["clicks"], t["transactions"], t["ctr"]) == (1, 1, 1, 1, 1.0)
    assert report["revenue"] == [{"currency": "EUR", "transactions": 1, "revenue": 42.5}]
    assert report["status"] == "OK" and report["click_rank"] == 2.0
    # The legacy click carried no ts: it happened now, in the default range (the last 30 days).
    recent = await _report(api, auth, want_clicks=1)
    assert recent["totals"]["clicks"] == 1 and recent["top_products"][0]["pid"] == "b"

    forbidden = await api.get("/v1/analytics/report", params={"access_key": key})
    assert forbidden.status_code == 403 and forbidden.json()["status"] == "fail"
    backwards = await api.get("/v1/analytics/report", params={"from": "2024-06-02", "to": "2024-06-01"},
                              auth=auth)
    assert backwards.status_code == 400
    csv = await api.get("/v1/analytics/events.csv", params=JUNE, auth=auth)
    assert csv.headers["content-type"].startswith("text/csv") and len(csv.text.splitlines()) == 1 + 3
    assert "attachment" in csv.headers["content-disposition"]
    parquet = await api.get("/admin/v1/apps/{}/analytics/events.parquet".format(shop["app_id"]),
                            params=JUNE, headers=admin)
    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 3
    usage = (await api.get("/v1/usage", params=JUNE, auth=auth)).json()
    assert usage["totals"]["events"] == {"product_click": 1, "product_view": 1, "transaction": 1}
    admin_report = await api.get(f"/admin/v1/apps/{shop['app_id']}/analytics/report",
                                 params=JUNE, headers=admin)
    assert admin_report.json()["totals"]["clicks"] == 1
    missing = await api.get("/admin/v1/apps/nope/analytics/report", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_bad_input_is_refused_per_event_with_a_reason_and_the_valid_events_are_kept(api):
    shop, _ = await _shop(api)
    key, auth, ts = shop["app_key"], (shop["access_key"], shop["secret_key"]), 1_718_000_000_000
    now = int(time.time() * 1000)

    def click(n, **extra):
        return {"action": "product_click", "queryId": f"q{n}", "pid": f"p{n}", "pos": n + 1, "ts": ts + n, **extra}

    bad = {  # index in the batch → (event, what the reason says)
        1: (click(1, uid="u" * 33), "uid exceeds length limit"),
        3: (click(3, pos="abc"), "pos must be an integer >= 1"),
        5: (click(5, sid={"a": 1}), "sid should be of data type string"),
        7: ("not an object", "An event must be a JSON object"),
        9: ([click(9)], "An event must be a JSON object"),
        11: (click(11, ts=now + 2 * 86_400_000), "not ahead"),
        13: (click(13, ts=915_148_800_000), "ts must be the time in ms"),  # 1999-01-01: ancient
        15: (click(15, ts=ts // 1000), "ts must be the time in ms"),  # seconds, not ms
        17: ({"action": "transaction", "queryId": "q17", "currency": "USD", "ts": ts}, "value is required"),
        19: ({"action": "transaction", "queryId": "q19", "value": 5, "currency": "ABC", "ts": ts},
             "not an ISO 4217 code"),
        21: ({"action": "transaction", "queryId": "q21", "value": 5, "currency": "dollars", "ts": ts},
             "currency exceeds length limit"),
        23: (click(23, action="bad action!"), "action is required"),
        25: (click(25, pid="p" * 257), "pid exceeds length limit"),
        27: (click(27, price=-1), "price must be >= 0"),
        29: (click(29, pid="\ud800"), "valid Unicode"),  # a lone surrogate, escaped in the JSON
        31: (click(31, n1=10 ** 400), "n1 should be of data type number"),
        33: (click(33, value=float("nan")), "finite"),  # Python's json writes NaN, and reads it back
        35: ({"action": "product_view", "queryId": "q35"}, "pid is required for product_view"),
    }
    events = [bad[i][0] if i in bad else click(i) for i in range(37)]
    r = await api.post("/v3/events", params={"code": key},
                       content=json.dumps({"events": events}), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "warning"
    assert [x["index"] for x in body["result"]] == [i for i in range(37) if i not in bad]
    reasons = {}
    for err in body["error"]:
        reasons.setdefault(err["index"], []).append(err["error_message"])
        assert err["error_code"] and err["error_message"]
    assert sorted(reasons) == sorted(bad)
    for i, (_, reason) in bad.items():
        assert any(reason in m for m in reasons[i]), (i, reasons[i])

    # The 19 valid clicks of the batch (the even indexes) are stored.
    valid = 37 - len(bad)
    report = await _report(api, auth, want_clicks=valid, **JUNE)
    assert report["totals"]["clicks"] == valid and report["totals"]["transactions"] == 0

    # The pixel refuses the same inputs with a GIF and the reason, never a 500.
    for i in (1, 3, 11, 13, 15, 17, 19, 21, 23, 25, 27, 31):
        event = bad[i][0]
        params = {"code": key, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in event.items()}}
        pixel = await api.get("/v3/__va.gif", params=params)
        assert pixel.status_code == 200 and pixel.content.startswith(b"GIF89a"), i
        assert pixel.headers["x-tracking"] == "rejected", (i, pixel.headers)


async def test_batch_limits_and_credentials_are_answered_never_with_a_500(api):
    shop, _ = await _shop(api)
    key, ts = shop["app_key"], 1_718_000_000_000
    one = {"action": "product_view", "queryId": "q", "pid": "p", "ts": ts}

    full = await api.post("/v3/events", params={"code": key},
                          json={"events": [{**one, "pid": f"p{i}"} for i in range(1000)]})
    assert full.status_code == 200 and full.json()["status"] == "OK" and len(full.json()["result"]) == 1000
    over = await api.post("/v3/events", params={"code": key}, json={"events": [one] * 1001})
    assert over.status_code == 400 and over.json()["status"] == "fail"
    assert "At most 1000 events" in over.json()["error"][0]["error_message"]

    for params, status, reason in (({"code": "unknown-key"}, 401, "Invalid"),
                                   ({}, 401, "code (the app key) is required"),
                                   ({"code": ":placement-only"}, 401, "code (the app key) is required")):
        r = await api.post("/v3/events", params=params, json={"events": [one]})
        assert r.status_code == status and reason in r.json()["error"][0]["error_message"], r.text
    for content, reason in ((b"{oops", "must be JSON"), (b'{"events": {"a": 1}}', "must be JSON"),
                            (b"[]", "must be JSON"), (b"\xff\xfe", "must be JSON"),
                            (b'{"events": [' + b"1" * 5000 + b"]}", "must be JSON"),
                            (b" " * (4 * 1024 * 1024 + 1), "exceeds")):
        r = await api.post("/v3/events", params={"code": key}, content=content,
                           headers={"content-type": "application/json"})
        assert r.status_code == 400 and reason in r.json()["error"][0]["error_message"], (content[:20], r.text)
    for params in ({"code": "unknown-key", "action": "product_view"}, {"action": "product_view"}, {}):
        pixel = await api.get("/v3/__va.gif", params=params)
        assert pixel.status_code == 200 and pixel.headers["x-tracking"] == "rejected"
