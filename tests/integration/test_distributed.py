"""The distributed mode as processes: every service `magpie run ...` on a Tansu broker, the
control plane on PostgreSQL, objects in a shared folder, the search service owning a
qdrant-edge index and the analytics service owning chdb. End to end through the gateway over
HTTP, then faults: a killed embedding worker, a paused broker, a poison record.

Marked e2e: it runs the gateway as a server. One stack serves the whole module.
"""
from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from magpie.common.bus.kafka import REASON_HEADER, SOURCE_HEADER
from tests.fixtures.catalog import encode, scene, serve_files
from tests.fixtures.kafka import TansuBroker, read_topic, start_tansu
from tests.fixtures.server import admin_headers
from tests.fixtures.stack import Stack, new_database

pytestmark = pytest.mark.e2e
PARTITIONS = 4
IMAGES = {f"p{i}.png": encode(scene(i, (160, 128))) for i in range(90)}


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuBroker]:
    """A private broker: one test pauses it."""
    with start_tansu() as b:
        yield b


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    """Distinct product pictures over HTTP."""
    with serve_files(IMAGES) as base:
        yield base


@pytest.fixture(scope="module")
def stack(tmp_path_factory, broker, postgres_url, model_cache) -> Iterator[Stack]:
    """Every service running, two embedding workers in one group."""
    s = Stack(tmp_path_factory.mktemp("dist"), broker.bootstrap, new_database(postgres_url),
              model_cache, partitions=PARTITIONS)
    try:
        s.start(embedding_workers=2)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def shop(stack) -> dict:
    """One application with a searchable field."""
    headers = admin_headers(stack.url)
    app = httpx.post(f"{stack.url}/admin/v1/apps", json={"name": "Distributed"}, headers=headers)
    assert app.status_code == 201, app.text
    body = app.json()
    r = httpx.put(f"{stack.url}/admin/v1/apps/{body['app_id']}/schema", headers=headers,
                  json={"fields": [{"name": "brand", "type": "string", "searchable": True},
                                   {"name": "title", "type": "text", "searchable": True}]})
    assert r.status_code == 200, r.text
    return {**body, "auth": (body["access_key"], body["secret_key"])}


def insert(stack: Stack, shop: dict, images: str, ids: range) -> int:
    """One /insert call; its trans_id."""
    form = {}
    for n, i in enumerate(ids):
        form[f"im_name[{n}]"] = f"p{i}"
        form[f"im_url[{n}]"] = f"{images}/p{i}.png"
        form[f"brand[{n}]"] = ["acme", "zenith"][i % 2]
        form[f"title[{n}]"] = ["red running shoe", "blue wool jacket", "leather cap"][i % 3]
    r = httpx.post(f"{stack.url}/insert", data=form, auth=shop["auth"], timeout=30).json()
    assert r["status"] == "OK", r
    return r["trans_id"]


def wait_done(stack: Stack, shop: dict, trans_id: int, timeout: float = 90) -> dict:
    """Poll /insert/status until the transaction is complete; its status."""
    deadline = time.monotonic() + timeout
    while True:
        st = httpx.get(f"{stack.url}/insert/status/{trans_id}", auth=shop["auth"],
                       timeout=10).json()["result"][0]
        if st["processed_percent"] == 100 or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def item_count(stack: Stack, shop: dict) -> int:
    """How many items the application's index holds (through the gateway)."""
    return httpx.get(f"{stack.url}/v1/app", auth=shop["auth"], timeout=10).json()["item_count"]


def handled(proc_url: str, topic: str) -> float:
    """Records of `topic` a service process has handled, from its /metrics."""
    text = httpx.get(f"{proc_url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("magpie_bus_records_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_service_is_ready_and_the_embedding_workers_split_the_partitions(stack):
    for key, proc in stack.procs.items():
        body = httpx.get(f"{proc.url}/ready", timeout=5).json()
        assert body["status"] == "ok", (key, body)
    gateway = httpx.get(f"{stack.url}/ready").json()["checks"]
    assert gateway["search"] == gateway["analytics"] == "ok"
    # The internal APIs answer only the bearer of the shared token (the gateway has it).
    probe = f"{stack.procs['search'].url}/internal/v1/index/x/count"
    refused = httpx.post(probe, json={})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "InvalidCredentials"
    allowed = httpx.post(probe, json={}, headers={"Authorization": f"Bearer {stack.internal_token}"})
    assert allowed.status_code == 200 and allowed.json() == {"count": 0}
    deadline = time.monotonic() + 30
    while True:  # the group settles a little after both members are ready
        held = [set(httpx.get(f"{stack.procs[k].url}/ready").json()["partitions"]
                    ["image.ready/embedding"]) for k in ("embedding", "embedding-2")]
        if (held[0] and held[1] and not held[0] & held[1]
                and held[0] | held[1] == set(range(PARTITIONS))) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert held[0] and held[1] and not held[0] & held[1], held
    assert held[0] | held[1] == set(range(PARTITIONS))


def test_insert_search_track_and_report_end_to_end(stack, shop, images):
    trans_id = insert(stack, shop, images, range(0, 16))
    st = wait_done(stack, shop, trans_id)
    assert (st["total"], st["success_count"], st["fail_count"]) == (16, 16, 0), st
    assert item_count(stack, shop) == 16
    # Both workers of the group embedded some of them.
    assert handled(stack.procs["embedding"].url, "image.ready") > 0
    assert handled(stack.procs["embedding-2"].url, "image.ready") > 0

    auth = shop["auth"]
    found = httpx.get(f"{stack.url}/search", params={"im_name": "p3", "limit": 5, "fq": "brand:zenith",
                                                     "facets": "brand"}, auth=auth).json()
    assert found["status"] == "OK", found
    names = [r["im_name"] for r in found["result"]]
    assert len(names) == 5 and "p3" not in names
    assert all(int(n[1:]) % 2 == 1 for n in names)  # the filter held: zenith is odd
    assert found["total"] == 7  # 8 zenith items less the query item
    assert found["facets"][0]["items"] == [{"value": "zenith", "count": 8}]
    # A text filter reads the field's vocabulary by scrolling the index, over HTTP too.
    jackets = httpx.get(f"{stack.url}/search", params={"im_name": "p3", "limit": 20,
                                                       "fq": "title:jacket"}, auth=auth).json()
    assert jackets["status"] == "OK", jackets
    assert sorted(int(r["im_name"][1:]) for r in jackets["result"]) == [1, 4, 7, 10, 13]

    upload = httpx.post(f"{stack.url}/uploadsearch", files={"image": ("q.png", IMAGES["p5.png"])},
                        data={"limit": "3", "score": "true"}, auth=auth).json()
    assert upload["status"] == "OK", upload
    assert upload["result"][0]["im_name"] == "p5" and upload["result"][0]["score"] > 0.99
    again = httpx.post(f"{stack.url}/uploadsearch", data={"im_id": upload["im_id"], "limit": "3"},
                       auth=auth).json()
    assert [r["im_name"] for r in again["result"]] == [r["im_name"] for r in upload["result"]]
    missing = httpx.get(f"{stack.url}/search", params={"im_name": "nope"}, auth=auth).json()
    # The search service's typed error crossed HTTP and answers as in standalone mode.
    assert missing["status"] == "fail" and "im_name" in missing["error"][0], missing

    key = shop["app_key"]
    click = {"action": "product_click", "queryId": found["reqid"], "pid": names[1], "pos": 2,
             "uid": "u1", "ts": int(time.time() * 1000)}
    r = httpx.post(f"{stack.url}/v3/events", params={"code": key}, json={"events": [click]}).json()
    assert r["status"] == "OK", r
    deadline = time.monotonic() + 30
    while True:  # served searches and events travel over Kafka to the analytics service
        report = httpx.get(f"{stack.url}/v1/analytics/report", auth=auth).json()
        t = report["totals"]
        if (t["searches"] >= 4 and t["clicks"] >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (t["searches"], t["clicks"], t["clicked_searches"]) == (4, 1, 1), report
    assert report["click_rank"] == 2.0
    with httpx.stream("GET", f"{stack.url}/v1/analytics/events.csv", auth=auth) as resp:
        lines = b"".join(resp.iter_bytes()).decode().splitlines()
    assert resp.status_code == 200 and len(lines) == 2 and found["reqid"] in lines[1]


def test_a_killed_embedding_worker_loses_nothing_and_duplicates_nothing(stack, shop, images):
    before = item_count(stack, shop)
    first = insert(stack, shop, images, range(20, 40))
    deadline = time.monotonic() + 30
    while handled(stack.procs["embedding"].url, "image.ready") < 12 and time.monotonic() < deadline:
        time.sleep(0.02)  # the worker is busy with this ingest now
    stack.kill("embedding")
    second = insert(stack, shop, images, range(40, 60))  # more work for a worker that is gone
    assert item_count(stack, shop) < before + 40, "the kill came after the ingest had finished"
    stack.wait_ready(stack.spawn("embedding"))  # restarted, rejoins the group
    for trans_id in (first, second):
        st = wait_done(stack, shop, trans_id)
        assert (st["total"], st["success_count"], st["fail_count"]) == (20, 20, 0), st
    assert item_count(stack, shop) == before + 40
    # Exactly once: every item once in the index (ids derive from im_name), and a search over
    # the whole catalog sees each name once.
    everything = httpx.get(f"{stack.url}/search", params={"im_name": "p20", "limit": 100},
                           auth=shop["auth"]).json()
    names = [r["im_name"] for r in everything["result"]]
    assert len(names) == len(set(names)) == before + 40 - 1


def test_a_paused_broker_stalls_the_pipeline_which_then_finishes(stack, shop, images, broker):
    # Tansu keeps its data in memory: a real restart would lose every topic, so the outage is
    # a SIGSTOP/SIGCONT of the broker process (connections hang, then resume).
    before = item_count(stack, shop)
    trans_id = insert(stack, shop, images, range(60, 75))
    broker.process.send_signal(signal.SIGSTOP)
    try:
        # The index answers without the broker: the pipeline is stalled mid-ingest.
        assert item_count(stack, shop) < before + 15, "the pause came after the ingest had finished"
        time.sleep(3)
    finally:
        broker.process.send_signal(signal.SIGCONT)
    st = wait_done(stack, shop, trans_id, timeout=120)
    assert (st["total"], st["success_count"], st["fail_count"]) == (15, 15, 0), st
    assert item_count(stack, shop) == before + 15
    for key, proc in stack.procs.items():
        if proc.process.poll() is None:
            assert httpx.get(f"{proc.url}/ready", timeout=5).status_code == 200, key


async def _publish_raw(bootstrap: str, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_a_poison_record_is_dead_lettered_with_its_reason_and_the_rest_flows(stack, shop, images):
    topic = f"{stack.prefix}image.ready"
    asyncio.run(_publish_raw(stack.bootstrap, topic, b'{"app_id": 42, "garbage": true}', b"poison"))
    before = item_count(stack, shop)
    trans_id = insert(stack, shop, images, range(75, 85))
    st = wait_done(stack, shop, trans_id)
    assert (st["total"], st["success_count"], st["fail_count"]) == (10, 10, 0), st
    assert item_count(stack, shop) == before + 10
    [dead] = asyncio.run(read_topic(stack.bootstrap, f"{topic}.embedding.dlq", 1, timeout=30,
                                    partitions=PARTITIONS))
    headers = dict(dead.headers)
    assert dead.key == b"poison" and dead.value == b'{"app_id": 42, "garbage": true}'
    assert headers[REASON_HEADER].decode().startswith("undecodable ImageReady")
    assert headers[SOURCE_HEADER].decode().startswith(f"{topic}/")


def test_sigterm_stops_every_service_cleanly(stack):
    started = time.monotonic()
    codes = stack.stop()
    # uvicorn finishes its shutdown, then re-raises the signal it caught: -SIGTERM is clean.
    assert set(codes.values()) <= {0, -signal.SIGTERM}, codes
    assert time.monotonic() - started < 30
    for key, proc in stack.procs.items():
        log = proc.log()
        # The lifespan ran to its end: consumers stopped (and committed), adapters closed.
        assert "Finished server process" in log and "Traceback" not in log, (key, log[-3000:])
    assert "draining in-flight work" in stack.procs["embedding-2"].log()
