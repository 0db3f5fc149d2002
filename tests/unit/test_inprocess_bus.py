"""The in-process bus: ordering, groups, backpressure, retries, dead letters, drain and spool."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from magpie.common.bus.inprocess import SPOOL_FILE, InProcessBus
from magpie.common.errors import InvalidRequest, Unavailable
from magpie.common.events.control import ApplicationCreated, ApplicationDeleted

pytestmark = pytest.mark.unit


def ev(app: str, n: int) -> ApplicationCreated:
    """An event keyed by `app`, numbered `n` in its name."""
    return ApplicationCreated(app_id=app, name=str(n), image_type="product")


def make_bus(**kwargs) -> InProcessBus:
    """A bus with fast retries unless a test says otherwise."""
    options = dict(queue_size=100, workers=4, max_retries=3, retry_backoff_s=0.001,
                   shutdown_timeout_s=5.0)
    options.update(kwargs)
    return InProcessBus(**options)


async def wait_until(predicate, timeout: float = 2.0) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_events_of_one_key_arrive_in_order():
    bus = make_bus(workers=4)
    seen: list[tuple[str, int]] = []

    async def handler(e: ApplicationCreated) -> None:
        # Uneven work per event: a bus that ignored keys would reorder them.
        await asyncio.sleep(0.001 * (int(e.name) % 3))
        seen.append((e.app_id, int(e.name)))

    bus.subscribe(ApplicationCreated, "indexer", handler)
    await bus.start()
    apps = [f"app-{i}" for i in range(6)]
    for n in range(15):
        for app in apps:
            await bus.publish(ev(app, n))
    await bus.stop()

    assert len(seen) == 90
    for app in apps:
        assert [n for a, n in seen if a == app] == list(range(15))


async def test_each_group_gets_every_event():
    bus = make_bus()
    got: dict[str, list[str]] = {"search": [], "analytics": []}
    for group in got:
        async def handler(e: ApplicationCreated, group: str = group) -> None:
            got[group].append(e.event_id)
        bus.subscribe(ApplicationCreated, group, handler)
    await bus.start()
    events = [ev(f"app-{i}", i) for i in range(20)]
    for e in events:
        await bus.publish(e)
    await bus.stop()

    ids = sorted(e.event_id for e in events)
    assert sorted(got["search"]) == ids
    assert sorted(got["analytics"]) == ids


async def test_handlers_in_one_group_share_its_events():
    bus = make_bus()
    got: dict[str, list[ApplicationCreated]] = {"a": [], "b": []}
    for member in got:
        async def handler(e: ApplicationCreated, member: str = member) -> None:
            got[member].append(e)
        bus.subscribe(ApplicationCreated, "fetchers", handler)
    await bus.start()
    events = [ev(f"app-{i % 10}", i) for i in range(40)]
    for e in events:
        await bus.publish(e)
    await bus.stop()

    handled = got["a"] + got["b"]
    assert sorted(e.event_id for e in handled) == sorted(e.event_id for e in events)
    assert got["a"] and got["b"]
    # Like partitions: one key belongs to one member.
    assert not {e.app_id for e in got["a"]} & {e.app_id for e in got["b"]}


async def test_publishing_to_a_topic_nobody_reads_is_a_no_op():
    bus = make_bus()
    await bus.start()
    await bus.publish(ApplicationDeleted(app_id="app-1"))
    await bus.stop()
    assert bus.dead_letters == []


async def test_publish_waits_while_the_queue_is_full():
    bus = make_bus(queue_size=1, workers=1)
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def handler(e: ApplicationCreated) -> None:
        started.set()
        await release.wait()
        handled.append(int(e.name))

    bus.subscribe(ApplicationCreated, "slow", handler)
    await bus.start()
    await bus.publish(ev("a", 0))
    await started.wait()  # the worker holds event 0
    await bus.publish(ev("a", 1))  # fills the one slot
    blocked = asyncio.create_task(bus.publish(ev("a", 2)))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "publish should wait for room in the queue"

    release.set()
    await asyncio.wait_for(blocked, 1)
    await bus.stop()
    assert handled == [0, 1, 2]


async def test_a_retryable_failure_is_retried_until_it_succeeds():
    bus = make_bus(max_retries=3)
    calls = 0

    async def handler(e: ApplicationCreated) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("object store busy")

    bus.subscribe(ApplicationCreated, "g", handler)
    await bus.start()
    await bus.publish(ev("a", 0))
    await bus.stop()
    assert calls == 3
    assert bus.dead_letters == []


async def test_exhausted_retries_end_in_the_dead_letters(caplog):
    bus = make_bus(max_retries=2)
    calls = 0

    async def handler(e: ApplicationCreated) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    bus.subscribe(ApplicationCreated, "g", handler)
    await bus.start()
    event = ev("a", 0)
    await bus.publish(event)
    await bus.stop()

    assert calls == 3  # the first try and two retries
    [(topic, group, dead, reason)] = bus.dead_letters
    assert (topic, group, dead) == ("application.created", "g", event)
    assert "RuntimeError: boom" in reason and "3 tries" in reason
    assert any("dead letter" in r.message for r in caplog.records)


async def test_backoff_grows_between_tries():
    bus = make_bus(max_retries=2, retry_backoff_s=0.02)
    times: list[float] = []

    async def handler(e: ApplicationCreated) -> None:
        times.append(asyncio.get_running_loop().time())
        raise Unavailable()

    bus.subscribe(ApplicationCreated, "g", handler)
    await bus.start()
    await bus.publish(ev("a", 0))
    await bus.stop()
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.02 and second >= 0.04


async def test_a_non_retryable_error_goes_straight_to_the_dead_letters():
    bus = make_bus(max_retries=5)
    calls = 0

    async def handler(e: ApplicationCreated) -> None:
        nonlocal calls
        calls += 1
        raise InvalidRequest("bad row")

    bus.subscribe(ApplicationCreated, "g", handler)
    await bus.start()
    await bus.publish(ev("a", 0))
    await bus.stop()
    assert calls == 1
    [(_, _, _, reason)] = bus.dead_letters
    assert reason == "InvalidRequest: bad row"


async def test_stop_drains_the_queues(tmp_path: Path):
    bus = make_bus(workers=2, spool_dir=tmp_path)
    handled: list[int] = []

    async def handler(e: ApplicationCreated) -> None:
        await asyncio.sleep(0.002)
        handled.append(int(e.name))

    bus.subscribe(ApplicationCreated, "g", handler)
    await bus.start()
    for n in range(25):
        await bus.publish(ev(f"app-{n % 3}", n))
    assert len(handled) < 25  # still queued when stop begins
    await bus.stop()

    assert sorted(handled) == list(range(25))
    assert not (tmp_path / SPOOL_FILE).exists()
    with pytest.raises(Unavailable):
        await bus.publish(ev("a", 99))


async def test_what_is_left_at_stop_is_spooled_and_redelivered(tmp_path: Path):
    bus = make_bus(workers=1, shutdown_timeout_s=0, spool_dir=tmp_path)
    started = asyncio.Event()

    async def stuck(e: ApplicationCreated) -> None:
        started.set()
        await asyncio.Event().wait()  # never returns: only cancellation ends it

    bus.subscribe(ApplicationCreated, "g", stuck)
    await bus.start()
    events = [ev("a", n) for n in range(4)]
    for e in events:
        await bus.publish(e)
    await started.wait()
    await bus.stop()

    spool = tmp_path / SPOOL_FILE
    lines = [json.loads(line) for line in spool.read_text().splitlines()]
    # The interrupted event comes first, then the queue, in order.
    assert [r["event"] for r in lines] == [e.model_dump_json() for e in events]
    where = {(r["topic"], r["group"], r["key"]) for r in lines}
    assert where == {("application.created", "g", "a")}

    again = make_bus(workers=1, spool_dir=tmp_path)
    received: list[ApplicationCreated] = []

    async def handler(e: ApplicationCreated) -> None:
        received.append(e)

    again.subscribe(ApplicationCreated, "g", handler)
    await again.start()
    assert not spool.exists()
    await wait_until(lambda: len(received) == 4)
    await again.stop()
    assert received == events


async def test_spool_keeps_each_group_apart(tmp_path: Path):
    bus = make_bus(workers=1, shutdown_timeout_s=0.2, spool_dir=tmp_path)
    release = asyncio.Event()
    fast: list[str] = []

    async def quick(e: ApplicationCreated) -> None:
        fast.append(e.name)

    async def stuck(e: ApplicationCreated) -> None:
        await release.wait()

    bus.subscribe(ApplicationCreated, "quick", quick)
    bus.subscribe(ApplicationCreated, "stuck", stuck)
    await bus.start()
    for n in range(3):
        await bus.publish(ev("a", n))
    await bus.stop()
    assert fast == ["0", "1", "2"]

    # Only the group that did not finish gets the events again.
    again = make_bus(workers=1, spool_dir=tmp_path)
    got: dict[str, list[str]] = {"quick": [], "stuck": []}
    for group in got:
        async def handler(e: ApplicationCreated, group: str = group) -> None:
            got[group].append(e.name)
        again.subscribe(ApplicationCreated, group, handler)
    await again.start()
    await wait_until(lambda: len(got["stuck"]) == 3)
    await again.stop()
    assert got == {"quick": [], "stuck": ["0", "1", "2"]}


async def test_events_published_while_stopping_are_spooled(tmp_path: Path):
    bus = make_bus(workers=1, shutdown_timeout_s=2.0, spool_dir=tmp_path)
    relaying = asyncio.Event()
    deleted: list[str] = []

    async def relay(e: ApplicationCreated) -> None:
        # A handler still draining when stop begins publishes a follow-up.
        relaying.set()
        await asyncio.sleep(0.02)
        await bus.publish(ApplicationDeleted(app_id=e.app_id))

    async def on_deleted(e: ApplicationDeleted) -> None:
        deleted.append(e.app_id)

    bus.subscribe(ApplicationCreated, "relay", relay)
    bus.subscribe(ApplicationDeleted, "cleanup", on_deleted)
    await bus.start()
    await bus.publish(ev("a", 0))
    await relaying.wait()
    await bus.stop()

    assert deleted == []  # nothing new starts once stop has begun...
    lines = [json.loads(x) for x in (tmp_path / SPOOL_FILE).read_text().splitlines()]
    # ...but the follow-up is kept for the next start, not lost or failed.
    assert [(r["topic"], r["group"]) for r in lines] == [("application.deleted", "cleanup")]
    assert bus.dead_letters == []


async def test_without_a_spool_leftovers_become_dead_letters():
    bus = make_bus(workers=1, shutdown_timeout_s=0)

    async def stuck(e: ApplicationCreated) -> None:
        await asyncio.Event().wait()

    bus.subscribe(ApplicationCreated, "g", stuck)
    await bus.start()
    await bus.publish(ev("a", 0))
    await bus.publish(ev("a", 1))
    await bus.stop()
    assert [(d.event.name, d.reason) for d in bus.dead_letters] == [
        ("0", "undelivered at shutdown, no spool"),
        ("1", "undelivered at shutdown, no spool"),
    ]


async def test_a_publisher_blocked_at_stop_is_not_lost(tmp_path: Path):
    bus = make_bus(queue_size=1, workers=1, shutdown_timeout_s=0, spool_dir=tmp_path)
    started = asyncio.Event()

    async def stuck(e: ApplicationCreated) -> None:
        started.set()
        await asyncio.Event().wait()

    bus.subscribe(ApplicationCreated, "g", stuck)
    await bus.start()
    await bus.publish(ev("a", 0))
    await started.wait()
    await bus.publish(ev("a", 1))
    blocked = [asyncio.create_task(bus.publish(ev("a", n))) for n in (2, 3)]
    await asyncio.sleep(0.01)
    await bus.stop()
    await asyncio.gather(*blocked)

    lines = [json.loads(x) for x in (tmp_path / SPOOL_FILE).read_text().splitlines()]
    names = [ApplicationCreated.model_validate_json(r["event"]).name for r in lines]
    assert names == ["0", "1", "2", "3"]
