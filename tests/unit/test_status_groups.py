"""IngestStore's group writer: statuses that arrive together share one write, one bad status
fails alone, a quiet spell writes at once. The SQL itself is covered by the integration
tests (tests/integration/test_ingestion_service.py); here `record_many` is replaced by a
recorder so the grouping logic runs without a database."""
from __future__ import annotations

import asyncio
import time

import pytest

from magpie.common.events.ingest import ItemOp, ItemStatus
from magpie.ingestion.store import IngestStore

pytestmark = pytest.mark.unit


class GroupRecorder(IngestStore):
    def __init__(self, window_s: float = 0.05, batch: int = 500, poison: str | None = None) -> None:
        super().__init__(db=None, status_window_s=window_s, status_batch=batch)  # type: ignore[arg-type]
        self.groups: list[list[str]] = []
        self.poison = poison
        self.started: list[float] = []

    async def record_many(self, statuses):  # noqa: ANN001, ANN201
        self.started.append(time.perf_counter())
        names = [s.im_name for s in statuses]
        self.groups.append(names)
        await asyncio.sleep(0.01)  # a commit takes a while
        if self.poison in names:
            raise RuntimeError("database says no")
        return [not n.startswith("dup") for n in names]


def status(name: str) -> ItemStatus:
    return ItemStatus(app_id="app_x", trans_id=1, im_name=name, op=ItemOp.UPSERT, stage="search", ok=True)


async def test_statuses_arriving_together_share_one_write() -> None:
    store = GroupRecorder()
    applied = await asyncio.gather(*(store.record(status(f"i{k}")) for k in range(40)))
    assert applied == [True] * 40
    assert store.groups == [[f"i{k}" for k in range(40)]]


async def test_the_result_of_each_status_comes_back_to_its_caller() -> None:
    store = GroupRecorder()
    assert await asyncio.gather(store.record(status("a")), store.record(status("dup-a"))) == [True, False]


async def test_after_a_quiet_spell_a_status_is_written_at_once_then_groups_wait_the_window() -> None:
    store = GroupRecorder(window_s=0.2)
    started = time.perf_counter()
    await store.record(status("first"))
    assert time.perf_counter() - started < 0.15  # no window to wait out
    second = asyncio.create_task(store.record(status("second")))
    third = asyncio.create_task(store.record(status("third")))
    await asyncio.gather(second, third)
    assert store.groups == [["first"], ["second", "third"]]
    assert store.started[1] - store.started[0] >= 0.19  # one write per window at most


async def test_groups_are_bounded() -> None:
    store = GroupRecorder(batch=16)
    await asyncio.gather(*(store.record(status(f"i{k}")) for k in range(40)))
    assert [len(g) for g in store.groups] == [16, 16, 8]
    assert [n for g in store.groups for n in g] == [f"i{k}" for k in range(40)]  # in order


async def test_one_status_that_cannot_be_written_fails_alone() -> None:
    store = GroupRecorder(poison="bad")
    results = await asyncio.gather(*(store.record(status(n)) for n in ("a", "bad", "c")),
                                   return_exceptions=True)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], RuntimeError)  # its handler raises: the bus retries it
    assert store.groups == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_caller_that_gives_up_does_not_hold_up_the_others() -> None:
    store = GroupRecorder(window_s=0.1)
    await store.record(status("warm"))  # the next group waits for its window
    impatient = asyncio.create_task(store.record(status("gone")))
    patient = asyncio.create_task(store.record(status("kept")))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient is True
    with pytest.raises(asyncio.CancelledError):
        await impatient
