"""The Kafka bus against a real broker (Tansu): groups, commits, redelivery, dead letters."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from magpie.common.bus.kafka import REASON_HEADER, TYPE_HEADER, VERSION_HEADER, KafkaBus
from magpie.common.errors import InvalidRequest, Unavailable
from magpie.common.events.control import ApplicationCreated
from tests.fixtures.kafka import read_topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
TOPIC = ApplicationCreated.topic


def ev(app: str, name: str = "n") -> ApplicationCreated:
    """An event keyed by `app`."""
    return ApplicationCreated(app_id=app, name=name, image_type="product")


def make_bus(bootstrap: str, prefix: str, **kwargs) -> KafkaBus:
    """A bus tuned for tests: short sessions (Tansu holds a join for half of one), fast retries."""
    options = dict(
        topic_prefix=prefix, partitions=PARTITIONS, max_retries=2, retry_backoff_s=0.01,
        client_id="magpie-test", session_timeout_ms=2000, heartbeat_interval_ms=300,
        graceful_timeout_s=2.0,
    )
    options.update(kwargs)
    return KafkaBus(bootstrap, **options)


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def eventually_async(fetch: Callable, expected: object, timeout: float = 10.0) -> None:
    """Await `fetch()` until it returns `expected`; fail with the last value after `timeout`."""
    last = None
    try:
        async with asyncio.timeout(timeout):
            while (last := await fetch()) != expected:
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"expected {expected!r}, last saw {last!r}")


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets `group` committed on `topic`, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Partitions named: Tansu answers an OffsetFetch for "all partitions" with a frame
        # aiokafka cannot decode.
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=parts)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset > 0}
    finally:
        await admin.close()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of its own, so tests sharing the session broker never meet."""
    return f"t{uuid4().hex[:8]}."


@pytest.fixture
async def buses() -> AsyncIterator[list[KafkaBus]]:
    """Buses a test started; stopped at teardown whatever happened."""
    started: list[KafkaBus] = []
    yield started
    await asyncio.gather(*(bus.stop() for bus in started), return_exceptions=True)


async def test_publish_and_consume_in_a_group(kafka_bootstrap: str, prefix: str, buses):
    bus = make_bus(kafka_bootstrap, prefix)
    got: list[ApplicationCreated] = []

    async def handler(e: ApplicationCreated) -> None:
        got.append(e)

    bus.subscribe(ApplicationCreated, "indexer", handler)
    buses.append(bus)
    await bus.start()
    events = [ev(f"app-{i % 3}", str(i)) for i in range(12)]
    for e in events:
        await bus.publish(e)
    await eventually(lambda: len(got) == 12)

    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in events)
    for app in ("app-0", "app-1", "app-2"):  # one key, one partition: in order
        assert [e.name for e in got if e.app_id == app] == [
            e.name for e in events if e.app_id == app
        ]
    # On the wire: keyed by event.key(), a JSON body, the type and version in headers.
    [record] = [r for r in await read_topic(kafka_bootstrap, prefix + TOPIC, 12)
                if r.value == events[0].model_dump_json().encode()]
    assert record.key == b"app-0"
    assert json.loads(record.value)["app_id"] == "app-0"
    headers = dict(record.headers)
    assert headers[TYPE_HEADER] == b"application.created"
    assert headers[VERSION_HEADER] == b"1"

    await bus.stop()
    with pytest.raises(Unavailable):
        await bus.publish(ev("app-0"))


async def test_topics_are_created_with_the_configured_partitions(kafka_bootstrap, prefix, buses):
    bus = make_bus(kafka_bootstrap, prefix, partitions=3)
    bus.subscribe(ApplicationCreated, "g", lambda e: asyncio.sleep(0))
    buses.append(bus)
    await bus.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([prefix + TOPIC, f"{prefix}{TOPIC}.g.dlq"])
    finally:
        await admin.close()
    assert [len(t["partitions"]) for t in described] == [3, 3]


async def test_two_consumers_in_a_group_split_the_partitions(kafka_bootstrap, prefix, buses):
    got: dict[str, list[ApplicationCreated]] = {"a": [], "b": []}
    pair = {name: make_bus(kafka_bootstrap, prefix) for name in got}
    for name, bus in pair.items():
        async def handler(e: ApplicationCreated, name: str = name) -> None:
            got[name].append(e)
        bus.subscribe(ApplicationCreated, "fetchers", handler)
        buses.append(bus)
    await asyncio.gather(*(bus.start() for bus in pair.values()))

    def held(name: str) -> set[int]:
        return pair[name].assigned_partitions()[(TOPIC, "fetchers")]

    def settled() -> bool:
        a, b = held("a"), held("b")
        return bool(a and b) and not a & b and a | b == {0, 1, 2, 3}

    # Publish only once the group has settled, so no rebalance can replay a record.
    await eventually(settled)
    events = [ev(f"app-{i % 12}", str(i)) for i in range(36)]
    for e in events:
        await pair["a"].publish(e)
    await eventually(lambda: len(got["a"]) + len(got["b"]) >= 36)
    await asyncio.sleep(0.3)  # a duplicate would show up now

    handled = [e.event_id for e in got["a"] + got["b"]]
    assert sorted(handled) == sorted(e.event_id for e in events)  # each exactly once
    assert got["a"] and got["b"]
    assert not {e.app_id for e in got["a"]} & {e.app_id for e in got["b"]}


async def test_committed_records_are_not_delivered_again(kafka_bootstrap, prefix, buses):
    first: list[str] = []

    async def record_first(e: ApplicationCreated) -> None:
        first.append(e.name)

    bus = make_bus(kafka_bootstrap, prefix)
    bus.subscribe(ApplicationCreated, "g", record_first)
    buses.append(bus)
    await bus.start()
    for n in range(3):
        await bus.publish(ev("app-1", str(n)))
    await eventually(lambda: len(first) == 3)
    await bus.stop()

    again: list[str] = []

    async def record_again(e: ApplicationCreated) -> None:
        again.append(e.name)

    restarted = make_bus(kafka_bootstrap, prefix)
    restarted.subscribe(ApplicationCreated, "g", record_again)
    buses.append(restarted)
    await restarted.start()
    # Same key, same partition: any record not committed would come before the marker.
    await restarted.publish(ev("app-1", "marker"))
    await eventually(lambda: again)
    assert again == ["marker"]
    assert first == ["0", "1", "2"]



async def test_stop_lets_the_handler_in_flight_finish(kafka_bootstrap, prefix, buses):
    started, finished = asyncio.Event(), []

    async def slow(e: ApplicationCreated) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(e.name)

    bus = make_bus(kafka_bootstrap, prefix, graceful_timeout_s=5.0)
    bus.subscribe(ApplicationCreated, "g", slow)
    buses.append(bus)
    await bus.start()
    await bus.publish(ev("app-1", "slow"))
    await asyncio.wait_for(started.wait(), 10)
    await bus.stop()

    assert finished == ["slow"]
    [record] = await read_topic(kafka_bootstrap, prefix + TOPIC, 1)
    assert await committed(kafka_bootstrap, "g", prefix + TOPIC) == {record.partition: 1}

def run_stuck_consumer(bootstrap: str, prefix: str, group: str) -> None:
    """Child-process entry: consume in `group`, announce each record, never finish one."""
    async def main() -> None:
        bus = make_bus(bootstrap, prefix)

        async def stuck(e: ApplicationCreated) -> None:
            print(f"got {e.name}", flush=True)
            await asyncio.Event().wait()

        bus.subscribe(ApplicationCreated, group, stuck)
        await bus.start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def test_a_record_is_redelivered_when_its_consumer_dies(kafka_bootstrap, prefix, buses):
    producer = make_bus(kafka_bootstrap, prefix)
    buses.append(producer)
    await producer.start()
    event = ev("app-7", "precious")
    await producer.publish(event)

    # A separate process, killed with SIGKILL mid-handler: no stop, no commit, no goodbye.
    code = f"from tests.integration.test_kafka_bus import run_stuck_consumer as r; " \
           f"r({kafka_bootstrap!r}, {prefix!r}, 'workers')"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        async with asyncio.timeout(20):
            line = await child.stdout.readline()
        assert line.decode().strip() == "got precious"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()

    got: list[ApplicationCreated] = []

    async def handler(e: ApplicationCreated) -> None:
        got.append(e)

    survivor = make_bus(kafka_bootstrap, prefix)
    survivor.subscribe(ApplicationCreated, "workers", handler)
    buses.append(survivor)
    await survivor.start()
    await eventually(lambda: got)
    assert got == [event]


async def test_failed_records_go_to_the_dead_letter_topic(kafka_bootstrap, prefix, buses):
    calls: dict[str, int] = {"flaky": 0, "invalid": 0}

    async def handler(e: ApplicationCreated) -> None:
        calls[e.app_id] += 1
        if e.app_id == "flaky":
            raise Unavailable("image host down")
        raise InvalidRequest("bad row")

    bus = make_bus(kafka_bootstrap, prefix, max_retries=2)
    bus.subscribe(ApplicationCreated, "fetch", handler)
    buses.append(bus)
    await bus.start()
    flaky, invalid = ev("flaky"), ev("invalid")
    await bus.publish(flaky)
    await bus.publish(invalid)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:  # a record no handler could read
        await producer.send_and_wait(prefix + TOPIC, b"not json", key=b"garbage")
    finally:
        await producer.stop()

    records = await read_topic(kafka_bootstrap, f"{prefix}{TOPIC}.fetch.dlq", 3)
    by_key = {r.key: r for r in records}
    assert calls == {"flaky": 3, "invalid": 1}  # retried, then given up; invalid: no retry
    assert ApplicationCreated.model_validate_json(by_key[b"flaky"].value) == flaky
    assert by_key[b"garbage"].value == b"not json"
    reasons = {k: dict(r.headers)[REASON_HEADER].decode() for k, r in by_key.items()}
    assert reasons[b"flaky"] == "Unavailable: image host down (after 3 tries)"
    assert reasons[b"invalid"] == "InvalidRequest: bad row"
    assert reasons[b"garbage"].startswith("undecodable ApplicationCreated")
    assert dict(by_key[b"flaky"].headers)[TYPE_HEADER] == b"application.created"

    # Dead-lettered records are committed: the group has moved past all three.
    source = await read_topic(kafka_bootstrap, prefix + TOPIC, 3)
    expected = {}
    for r in source:
        expected[r.partition] = max(expected.get(r.partition, 0), r.offset + 1)
    await eventually_async(lambda: committed(kafka_bootstrap, "fetch", prefix + TOPIC), expected)



async def test_a_poll_runs_keys_concurrently_and_each_key_in_order(kafka_bootstrap, prefix, buses):
    # Published before the consumer exists, so its first polls hold many records at once.
    producer = make_bus(kafka_bootstrap, prefix)
    buses.append(producer)
    await producer.start()
    events = [ev(f"app-{i % 8}", str(i)) for i in range(48)]
    for e in events:
        await producer.publish(e)

    in_flight, peak, got, first = 0, 0, [], []

    async def slow(e: ApplicationCreated) -> None:
        nonlocal in_flight, peak
        first.append(first[0] if first else asyncio.get_running_loop().time())
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        got.append(e)
        in_flight -= 1

    bus = make_bus(kafka_bootstrap, prefix, max_batch=64)
    bus.subscribe(ApplicationCreated, "batched", slow)
    buses.append(bus)
    await bus.start()
    await eventually(lambda: len(got) == 48)
    elapsed = asyncio.get_running_loop().time() - first[0]  # from the first record on

    assert peak > 1, "records of different keys were handled one at a time"
    assert peak <= 8  # never two records of one key at once: at most one per key
    assert elapsed < 48 * 0.05  # one at a time would take at least 2.4 s
    for app in {e.app_id for e in events}:
        assert [e.name for e in got if e.app_id == app] == [e.name for e in events if e.app_id == app]
    assert bus.handled[(TOPIC, "batched")] == 48
    source = await read_topic(kafka_bootstrap, prefix + TOPIC, 48)
    expected: dict[int, int] = {}
    for r in source:
        expected[r.partition] = max(expected.get(r.partition, 0), r.offset + 1)
    await eventually_async(lambda: committed(kafka_bootstrap, "batched", prefix + TOPIC), expected)
