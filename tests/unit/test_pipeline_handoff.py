"""The decoded-image hand-off (bounded LRU) and low-priority ingest threads."""
from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from magpie.common.pipeline import (
    DecodedImages,
    low_priority_executor,
    name_default_executor,
    named_executor,
    os_thread_named,
)

pytestmark = pytest.mark.unit


def _image(side: int) -> Image.Image:
    return Image.new("RGB", (side, side), (side % 256, 10, 20))


def _attached(**kwargs: int) -> DecodedImages:
    images = DecodedImages(**kwargs)
    images.attach_consumer()
    return images


def test_an_image_is_taken_once() -> None:
    images = _attached()
    picture = _image(64)
    images.put("h1", picture)
    assert images.take("h1") is picture
    assert images.take("h1") is None  # taken: the next reader goes to the object store
    assert (images.hits, images.misses, len(images), images.nbytes) == (1, 1, 0, 0)


def test_nothing_is_kept_without_a_consumer_in_the_process() -> None:
    images = DecodedImages()  # an image-fetch process without embedding
    images.put("h1", _image(64))
    assert len(images) == 0 and images.take("h1") is None


def test_when_full_new_images_are_turned_away_not_the_oldest() -> None:
    # Embedding takes images in about the order they came: the oldest are next in line.
    images = _attached(max_items=3)
    kept = [images.put(f"h{i}", _image(16)) for i in range(5)]
    assert kept == [True, True, True, False, False] and images.refused == 2
    assert images.take("h0") is not None and images.take("h4") is None
    assert images.put("h5", _image(16))  # room again once one was taken


def test_the_byte_bound_holds() -> None:
    images = _attached(max_items=100, max_bytes=3 * 100 * 100 * 3)  # three 100 px RGB images
    assert [images.put(f"h{i}", _image(100)) for i in range(4)] == [True, True, True, False]
    assert images.nbytes == 3 * 100 * 100 * 3
    assert not images.put("huge", _image(200))  # larger than the whole budget
    assert len(images) == 3


def test_images_nobody_took_expire() -> None:
    now = [0.0]
    images = DecodedImages(max_items=2, max_age_s=60, clock=lambda: now[0])
    images.attach_consumer()
    images.put("a", _image(8))
    images.put("b", _image(8))
    now[0] = 61.0  # a and b were never taken (their items failed, or had cached vectors)
    assert images.put("c", _image(8))
    assert len(images) == 1 and images.take("a") is None and images.take("c") is not None


def test_putting_the_same_hash_again_replaces_without_leaking_bytes() -> None:
    images = _attached()
    images.put("h", _image(10))
    images.put("h", _image(20))
    assert len(images) == 1 and images.nbytes == 20 * 20 * 3
    assert images.take("h").size == (20, 20)


def test_concurrent_producers_and_consumers_keep_the_accounting_exact() -> None:
    images = _attached(max_items=64)
    taken: list[int] = []
    lock = threading.Lock()

    def produce(base: int) -> None:
        for i in range(200):
            images.put(f"{base}-{i}", _image(8))

    def consume(base: int) -> None:
        for i in range(200):
            if images.take(f"{base}-{i}") is not None:
                with lock:
                    taken.append(i)

    threads = [threading.Thread(target=f, args=(b,)) for b in range(4) for f in (produce, consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(images) <= 64
    assert images.nbytes == len(images) * 8 * 8 * 3
    assert images.hits == len(taken)


def test_invalid_bounds_are_refused() -> None:
    for bad in ({"max_items": 0}, {"max_bytes": 0}, {"max_age_s": 0}):
        with pytest.raises(ValueError):
            DecodedImages(**bad)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux-only")
def test_low_priority_threads_run_niced_and_leave_the_caller_alone() -> None:
    me = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with low_priority_executor(2, "test-low", nice=5) as pool:
        niceness = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert niceness.result() == min(19, me + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == me


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_idle_ingest_threads_and_the_threads_they_start_run_under_sched_idle() -> None:
    def policies() -> tuple[int, int]:
        child: list[int] = []
        started = threading.Thread(target=lambda: child.append(os.sched_getscheduler(0)))
        started.start()  # like onnxruntime's pool, started from an ingest thread
        started.join()
        return os.sched_getscheduler(0), child[0]

    with low_priority_executor(1, "test-idle", nice=1, idle=True) as idle, \
            low_priority_executor(1, "test-low", nice=1) as low:
        assert idle.submit(policies).result() == (os.SCHED_IDLE, os.SCHED_IDLE)
        assert low.submit(policies).result() == (os.SCHED_OTHER, os.SCHED_OTHER)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller keeps its own


def _os_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names via prctl: Linux")
def test_pool_threads_carry_their_names_at_the_os_level() -> None:
    caller = _os_name()
    with low_priority_executor(1, "ingest-work", nice=1) as low, \
            named_executor(1, "a-very-long-pool-name") as named:
        assert low.submit(_os_name).result() == "ingest-work_0"
        assert named.submit(_os_name).result() == "a-very-long-poo"  # Linux keeps 15 bytes
    assert _os_name() == caller  # the calling thread keeps its own


def test_the_default_executor_threads_are_named() -> None:
    async def probe() -> str:
        name_default_executor(asyncio.get_running_loop())
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    assert asyncio.run(probe()).startswith("blocking-io_")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names via prctl: Linux")
def test_threads_started_under_a_temporary_name_inherit_it() -> None:
    caller, seen = _os_name(), []
    with os_thread_named("onnx-intra-op"):
        assert _os_name() == "onnx-intra-op"
        started = threading.Thread(target=lambda: seen.append(_os_name()))
        started.start()
        started.join()
    assert seen == ["onnx-intra-op"] and _os_name() == caller
