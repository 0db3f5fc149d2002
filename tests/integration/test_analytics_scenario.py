"""A shop's two days, end to end through the tracking API, the bus, the analytics handlers
and the real ClickHouse engine (chdb); then every figure of the report, per solution, by day,
and of the usage statistics, against values computed by hand below.

The scenario (app "shop"; D1 = 2024-06-10, D2 = 2024-06-11, UTC):

searches served (SearchServed, q1 and q5 delivered twice by the bus):
    reqid  method        solution       served        results
    q1     search        -              D1 09:00      10
    q2     search        -              D1 10:00      10
    q3     uploadsearch  camera-widget  D1 11:00      20
    q4     search        -              D1 23:59      10
    q5     uploadsearch  camera-widget  D2 09:00      20
    q6     search        -              D2 10:00       5
    q7     search        -              D2 11:00      10
so solution "search" (A) = q1 q2 q4 q6 q7, "camera-widget" = "uploadsearch" (B) = q3 q5.

shopper events (the D1 batch is POSTed twice, the q3 click pixel fires twice, the q-old click
is delivered twice by the bus: each is counted once):
    D1 batch   e1  view   q1 p1 pos 1     e2  click q1 p1 pos 1     e3 click q1 p2 pos 3
               e4  cart   q1 p1           e5  purchase q1 30 SGD    e6 result_load q1
               e7  view   q2 p2           e8  view q2 p3            e9 purchase q2 without
                                                                       value: REFUSED
    D1 pixels  e10 click  q3 p3 pos 25    e11 cart q3 p3            e12 purchase q3 12.50 USD
               e13 purchase q3 7.50 USD
    D2 batch   e14 click  q4 p2 pos 12 (00:01, after its search's midnight)
               e15 view   q5 p4 pos 2     e16 click q5 p4 pos 2     e17 click q5 p1 pos 5
               e18 cart   q5 p4           e19 purchase q1 15 EUR (the day after its search)
               e20 view   q6 p5           e21 click q6 p5, no pos
    D2 bus     e22 click  q-old p6 pos 4 (its search is not in the store)
plus one click for another application, and three ingest outcomes (one delivered twice).
"""
import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from magpie.analytics.tracking import validate_event
from magpie.common.events.analytics import SearchServed
from magpie.common.events.ingest import ItemStatus
from magpie.common.settings import Settings
from magpie.gateway.app import create_app

pytestmark = pytest.mark.integration
EMAIL, PASSWORD = "owner@example.com", "scenario-test-password"
D1, D2 = "2024-06-10", "2024-06-11"
JUNE = {"from": "2024-06-01", "to": "2024-06-30"}


def ms(day: str, hhmm: str, second: int = 0) -> int:
    """A UTC time of day D1 or D2 in ms since the epoch."""
    h, m = (int(x) for x in hhmm.split(":"))
    d = datetime.fromisoformat(day).replace(hour=h, minute=m, second=second, tzinfo=UTC)
    return int(d.timestamp() * 1000)


@pytest.fixture
async def api(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", admin_email=EMAIL, admin_password=SecretStr(PASSWORD),
                        bus_retry_backoff_s=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://magpie") as client:
        client.app = app
        yield client


async def _app(client, name):
    token = (await client.post("/admin/v1/sessions", json={"email": EMAIL, "password": PASSWORD})).json()["token"]
    r = await client.post("/admin/v1/apps", json={"name": name}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    return r.json()


SEARCHES = [  # reqid, method, solution, served at, results
    ("q1", "search", "", ms(D1, "09:00"), 10),
    ("q2", "search", "", ms(D1, "10:00"), 10),
    ("q3", "uploadsearch", "camera-widget", ms(D1, "11:00"), 20),
    ("q4", "search", "", ms(D1, "23:59"), 10),
    ("q5", "uploadsearch", "camera-widget", ms(D2, "09:00"), 20),
    ("q6", "search", "", ms(D2, "10:00"), 5),
    ("q7", "search", "", ms(D2, "11:00"), 10),
]
D1_BATCH = {"uid": "u1", "events": [
    {"action": "product_view", "queryId": "q1", "pid": "p1", "pos": 1, "ts": ms(D1, "09:01")},       # e1
    {"action": "product_click", "queryId": "q1", "pid": "p1", "pos": 1, "ts": ms(D1, "09:02")},      # e2
    {"action": "product_click", "queryId": "q1", "pid": "p2", "pos": 3, "ts": ms(D1, "09:03")},      # e3
    {"action": "add_to_cart", "queryId": "q1", "pid": "p1", "ts": ms(D1, "09:04")},                  # e4
    {"action": "transaction", "queryId": "q1", "value": 30, "currency": "sgd", "ts": ms(D1, "09:05")},  # e5
    {"action": "result_load", "queryId": "q1", "ts": ms(D1, "09:00", 30)},                           # e6
    {"action": "product_view", "queryId": "q2", "pid": "p2", "ts": ms(D1, "10:01")},                 # e7
    {"action": "product_view", "queryId": "q2", "pid": "p3", "ts": ms(D1, "10:02")},                 # e8
    {"action": "transaction", "queryId": "q2", "currency": "USD", "ts": ms(D1, "10:03")},            # e9
]}
D1_PIXELS = [
    {"action": "product_click", "queryId": "q3", "pid": "p3", "pos": "25", "ts": ms(D1, "11:01")},   # e10
    {"action": "product_click", "queryId": "q3", "pid": "p3", "pos": "25", "ts": ms(D1, "11:01")},   # e10 again
    {"action": "add_to_cart", "queryId": "q3", "pid": "p3", "ts": ms(D1, "11:02")},                  # e11
    {"action": "transaction", "queryId": "q3", "value": "12.50", "currency": "USD", "ts": ms(D1, "11:03")},  # e12
    {"action": "transaction", "queryId": "q3", "value": "7.5", "currency": "USD", "ts": ms(D1, "11:04")},    # e13
]
D2_BATCH = {"uid": "u2", "events": [
    {"action": "product_click", "queryId": "q4", "pid": "p2", "pos": 12, "ts": ms(D2, "00:01")},     # e14
    {"action": "product_view", "queryId": "q5", "pid": "p4", "pos": 2, "ts": ms(D2, "09:01")},       # e15
    {"action": "product_click", "queryId": "q5", "pid": "p4", "pos": 2, "ts": ms(D2, "09:02")},      # e16
    {"action": "product_click", "queryId": "q5", "pid": "p1", "pos": 5, "ts": ms(D2, "09:03")},      # e17
    {"action": "add_to_cart", "queryId": "q5", "pid": "p4", "ts": ms(D2, "09:04")},                  # e18
    {"action": "transaction", "queryId": "q1", "value": 15.0, "currency": "EUR", "ts": ms(D2, "09:05")},  # e19
    {"action": "product_view", "queryId": "q6", "pid": "p5", "ts": ms(D2, "10:01")},                 # e20
    {"action": "product_click", "queryId": "q6", "pid": "p5", "ts": ms(D2, "10:02")},                # e21
]}
E22 = {"action": "product_click", "queryId": "q-old", "pid": "p6", "pos": 4, "ts": ms(D2, "10:03")}


def day(date, searches, results, views, clicks, carts, purchases, clicked, carted, converted, ctr, atc, conv,
        rank):
    """A by_day row (or the totals, without `date`) as the report writes it."""
    row = {"date": date} if date else {}
    return {**row, "searches": searches, "results_served": results, "views": views, "clicks": clicks,
            "add_to_carts": carts, "transactions": purchases, "clicked_searches": clicked,
            "carted_searches": carted, "converted_searches": converted, "ctr": ctr, "add_to_cart_rate": atc,
            "conversion_rate": conv, "click_rank": rank}


def histogram(**counts):
    """The 21 buckets, zeros included; keyword p<N> or p21plus sets a bucket."""
    buckets = [{"pos": str(p), "clicks": counts.get(f"p{p}", 0)} for p in range(1, 21)]
    return [*buckets, {"pos": "21+", "clicks": counts.get("p21plus", 0)}]


# --- every figure, by hand -------------------------------------------------------------------------
# All solutions. Clicked searches D1 {q1,q3}, D2 {q4,q5,q6,q-old}: six distinct over the range.
# Carted {q1,q3} + {q5}. Converted D1 {q1,q3}, D2 {q1}: two distinct over the range, not three.
# Positions clicked: D1 1,3,25 (sum 29 / 3); D2 12,2,5,4 (23 / 4; e21 has none); all 52 / 7.
ALL_DAYS = [
    day(D1, 4, 50, 3, 3, 2, 3, 2, 2, 2, 2 / 4, 2 / 4, 2 / 4, round(29 / 3, 4)),
    day(D2, 3, 35, 2, 5, 1, 1, 4, 1, 1, round(4 / 3, 4), round(1 / 3, 4), round(1 / 3, 4), 23 / 4),
]
ALL_TOTALS = day(None, 7, 85, 5, 8, 3, 4, 6, 3, 2, round(6 / 7, 4), round(3 / 7, 4), round(2 / 7, 4),
                 round(52 / 7, 4))
ALL_REVENUE = [{"currency": "SGD", "transactions": 1, "revenue": 30.0},
               {"currency": "USD", "transactions": 2, "revenue": 20.0},
               {"currency": "EUR", "transactions": 1, "revenue": 15.0}]
ALL_HISTOGRAM = histogram(p1=1, p2=1, p3=1, p4=1, p5=1, p12=1, p21plus=1)
ALL_TOP = [{"pid": "p1", "clicks": 2, "avg_pos": 3.0},   # pos 1 and 5
           {"pid": "p2", "clicks": 2, "avg_pos": 7.5},   # pos 3 and 12
           {"pid": "p3", "clicks": 1, "avg_pos": 25.0},
           {"pid": "p4", "clicks": 1, "avg_pos": 2.0},
           {"pid": "p5", "clicks": 1, "avg_pos": None},  # clicked without a position
           {"pid": "p6", "clicks": 1, "avg_pos": 4.0}]

# Solution "search" (q1 q2 q4 q6 q7): e1 e2 e3 e4 e5 e7 e8 on D1; e14 e19 e20 e21 on D2.
SEARCH_DAYS = [
    day(D1, 3, 30, 3, 2, 1, 1, 1, 1, 1, round(1 / 3, 4), round(1 / 3, 4), round(1 / 3, 4), 2.0),
    day(D2, 2, 15, 1, 2, 0, 1, 2, 0, 1, 1.0, 0.0, 0.5, 12.0),
]
SEARCH_TOTALS = day(None, 5, 45, 4, 4, 1, 2, 3, 1, 1, 0.6, 0.2, 0.2, round(16 / 3, 4))
SEARCH_REVENUE = [{"currency": "SGD", "transactions": 1, "revenue": 30.0},
                  {"currency": "EUR", "transactions": 1, "revenue": 15.0}]
SEARCH_HISTOGRAM = histogram(p1=1, p3=1, p12=1)
SEARCH_TOP = [{"pid": "p2", "clicks": 2, "avg_pos": 7.5}, {"pid": "p1", "clicks": 1, "avg_pos": 1.0},
              {"pid": "p5", "clicks": 1, "avg_pos": None}]

# Solution "camera-widget" = method "uploadsearch" (q3 q5): e10..e13 on D1; e15..e18 on D2.
WIDGET_DAYS = [
    day(D1, 1, 20, 0, 1, 1, 2, 1, 1, 1, 1.0, 1.0, 1.0, 25.0),
    day(D2, 1, 20, 1, 2, 1, 0, 1, 1, 0, 1.0, 1.0, 0.0, 3.5),
]
WIDGET_TOTALS = day(None, 2, 40, 1, 3, 2, 2, 2, 2, 1, 1.0, 1.0, 0.5, round(32 / 3, 4))
WIDGET_REVENUE = [{"currency": "USD", "transactions": 2, "revenue": 20.0}]
WIDGET_HISTOGRAM = histogram(p2=1, p5=1, p21plus=1)
WIDGET_TOP = [{"pid": "p1", "clicks": 1, "avg_pos": 5.0}, {"pid": "p3", "clicks": 1, "avg_pos": 25.0},
              {"pid": "p4", "clicks": 1, "avg_pos": 2.0}]

USAGE_TOTALS = {
    "api_calls": {},  # calls through the HTTP routes are counted by the gateway, not here
    "searches": {"search": 5, "uploadsearch": 2},
    "events": {"add_to_cart": 3, "product_click": 8, "product_view": 5, "result_load": 1, "transaction": 4},
    "ingest": {"image-fetch:failed": 1, "search:ok": 2},
}
USAGE_DAYS = [
    {"date": D1, "api_calls": {}, "searches": {"search": 3, "uploadsearch": 1},
     "events": {"add_to_cart": 2, "product_click": 3, "product_view": 3, "result_load": 1, "transaction": 3},
     "ingest": {"search:ok": 2}},
    {"date": D2, "api_calls": {}, "searches": {"search": 2, "uploadsearch": 1},
     "events": {"add_to_cart": 1, "product_click": 5, "product_view": 2, "transaction": 1},
     "ingest": {"image-fetch:failed": 1}},
]


def _status(shop, im_name, stage, ok, day_, trans_id=1, error_code=None):
    return ItemStatus(app_id=shop["app_id"], trans_id=trans_id, im_name=im_name, op="upsert", stage=stage,
                      ok=ok, error_code=error_code, occurred_at=datetime.fromisoformat(f"{day_}T12:00:00+00:00"))


async def _drain(api):
    """Wait until the bus has handed every published message to its handlers."""
    bus = api.app.state.container.bus
    await asyncio.gather(*(q.join() for sub in bus._subs.values() for q in sub.queues))


async def _play(api, shop, other):
    key, bus = shop["app_key"], api.app.state.container.bus
    served = {reqid: SearchServed(app_id=shop["app_id"], reqid=reqid, method=method, solution=solution,
                                  result_count=results, ts=ts)
              for reqid, method, solution, ts, results in SEARCHES}
    for reqid, message in served.items():
        for _ in range(2 if reqid == "q1" else 1):  # a re-delivery: the very same message
            await bus.publish(message)

    first = await api.post("/v3/events", params={"code": key}, json=D1_BATCH)
    body = first.json()
    assert first.status_code == 200 and body["status"] == "warning"
    assert [r["index"] for r in body["result"]] == list(range(8))
    assert [(e["index"], e["error_message"]) for e in body["error"]] == [(8, "value is required for transaction.")]

    for params in D1_PIXELS:  # e10 fires twice
        r = await api.get("/v3/__va.gif", params={"code": key, **{k: str(v) for k, v in params.items()}})
        assert r.headers["x-tracking"] == "accepted", r.headers.get("x-tracking-error")

    r = await api.post("/v3/events", params={"code": key}, json=D2_BATCH)
    assert r.json()["status"] == "OK" and len(r.json()["result"]) == 8

    e22, errors = validate_event(E22, app_id=shop["app_id"], now_ms=int(time.time() * 1000))
    assert errors == []
    await bus.publish(e22)

    r = await api.post("/v3/events", params={"code": other["app_key"]},
                       json={"events": [{"action": "product_click", "queryId": "q1", "pid": "p1", "pos": 1,
                                         "ts": ms(D1, "09:30")}]})
    assert r.json()["status"] == "OK"

    for status in (_status(shop, "im1", "search", True, D1), _status(shop, "im2", "search", True, D1),
                   _status(shop, "im3", "image-fetch", False, D2, trans_id=2, error_code=201)):
        await bus.publish(status)

    # Retries once the originals are stored, so that they land in other parts than their
    # originals, where only the reads' deduplication catches them (within one insert,
    # ClickHouse already collapses them): the client re-sends the D1 batch, and the bus
    # re-delivers q5, e22 and im2's outcome.
    await _drain(api)
    await api.get("/v1/usage", params=JUNE, auth=(shop["access_key"], shop["secret_key"]))  # flushes
    again = await api.post("/v3/events", params={"code": key}, json=D1_BATCH)
    assert again.json()["result"] == body["result"]  # same content, same event ids
    for message in (served["q5"], e22, _status(shop, "im2", "search", True, D1)):
        await bus.publish(message)
    await _drain(api)


async def test_every_report_figure_matches_the_hand_computed_values(api):
    shop, other = await _app(api, "Shop"), await _app(api, "Other shop")
    auth = (shop["access_key"], shop["secret_key"])
    await _play(api, shop, other)

    usage = (await api.get("/v1/usage", params=JUNE, auth=auth)).json()
    assert usage["totals"] == USAGE_TOTALS
    assert usage["by_day"] == USAGE_DAYS

    async def report(**params):
        r = await api.get("/v1/analytics/report", params={**JUNE, **params}, auth=auth)
        assert r.status_code == 200, r.text
        return r.json()

    everything = await report()
    assert everything["totals"] == ALL_TOTALS
    assert everything["by_day"] == ALL_DAYS
    assert everything["revenue"] == ALL_REVENUE
    assert everything["click_rank"] == ALL_TOTALS["click_rank"]
    assert everything["click_histogram"] == ALL_HISTOGRAM
    assert everything["top_products"] == ALL_TOP
    assert (everything["app_id"], everything["from"], everything["to"], everything["solution"]) == (
        shop["app_id"], "2024-06-01", "2024-06-30", None)

    search = await report(solution="search")
    assert search["solution"] == "search"
    assert search["totals"] == SEARCH_TOTALS
    assert search["by_day"] == SEARCH_DAYS
    assert search["revenue"] == SEARCH_REVENUE
    assert search["click_rank"] == SEARCH_TOTALS["click_rank"]
    assert search["click_histogram"] == SEARCH_HISTOGRAM
    assert search["top_products"] == SEARCH_TOP

    widget = await report(solution="camera-widget")
    assert widget["totals"] == WIDGET_TOTALS
    assert widget["by_day"] == WIDGET_DAYS
    assert widget["revenue"] == WIDGET_REVENUE
    assert widget["click_rank"] == WIDGET_TOTALS["click_rank"]
    assert widget["click_histogram"] == WIDGET_HISTOGRAM
    assert widget["top_products"] == WIDGET_TOP
    by_method = await report(solution="uploadsearch")  # the same searches, named by their method
    assert {k: v for k, v in by_method.items() if k != "solution"} == {
        k: v for k, v in widget.items() if k != "solution"}

    # D2 alone: q4's click at 00:01 and q1's purchase still belong to "search", whose
    # searches of the day before the range count; the totals are D2's row of the month.
    d2 = await report(**{"from": D2, "to": D2}, solution="search")
    assert d2["totals"] == {k: v for k, v in SEARCH_DAYS[1].items() if k != "date"}
    assert d2["by_day"] == [SEARCH_DAYS[1]] and d2["revenue"] == [SEARCH_REVENUE[1]]
    assert d2["click_histogram"] == histogram(p12=1)

    # Nothing of the other application leaks in, and the raw export holds each event once.
    other_report = (await api.get("/v1/analytics/report", params=JUNE,
                                  auth=(other["access_key"], other["secret_key"]))).json()
    assert other_report["totals"]["clicks"] == 1 and other_report["totals"]["searches"] == 0
    csv = await api.get("/v1/analytics/events.csv", params=JUNE, auth=auth)
    assert len(csv.text.splitlines()) == 1 + 21
