"""Helpers every pipeline stage shares: reporting outcomes, the decoded-image hand-off,
low-priority threads for ingest work."""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Literal

from magpie.common.errors import MagpieError
from magpie.common.events.ingest import ItemEvent, ItemStatus
from magpie.common.ports import Bus

log = logging.getLogger(__name__)
_PR_SET_NAME, _PR_GET_NAME = 15, 16  # prctl options (linux/prctl.h)
Stage = Literal["ingestion", "image-fetch", "embedding", "search"]


async def report_failure(bus: Bus, event: ItemEvent, stage: Stage, err: MagpieError) -> None:
    """Publish the item's final failure with the error's code and message."""
    log.info("item %s/%s failed at %s: %s %s", event.app_id, event.im_name, stage, err.code, err.detail)
    await bus.publish(ItemStatus(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name,
                                 op=event.op, stage=stage, ok=False, error_code=err.code,
                                 error_message=err.detail))


async def report_success(bus: Bus, event: ItemEvent, stage: Stage, warnings: list[str] | None = None) -> None:
    """Publish the item's final success."""
    await bus.publish(ItemStatus(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name,
                                 op=event.op, stage=stage, ok=True, warnings=warnings or []))


# --- in-process hand-off of decoded images, and low-priority ingest threads ----------------

class DecodedImages:
    """A bounded, thread-safe store of decoded images by content hash, taken once each.

    image-fetch puts the image it has just decoded; embedding takes it and so skips reading
    and decoding the stored copy again. Only a shortcut: a miss (another process in the
    distributed mode, a full store, a restart) falls back to the object store, so the bus
    events stay as they are and nothing depends on it.

    When full, a new image is turned away rather than an old one evicted: embedding takes
    images in about the order they were put, so under a backlog larger than the bounds,
    evicting the oldest would drop each image just before its turn. Images nobody took
    (their item failed, or its vector was cached) expire after `max_age_s`.
    """

    def __init__(self, max_items: int = 512, max_bytes: int = 256 * 1024 * 1024,
                 max_age_s: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_items < 1 or max_bytes < 1 or max_age_s <= 0:
            raise ValueError("max_items, max_bytes and max_age_s must be positive")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[Any, int, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.refused = 0
        self._consumers = 0

    def attach_consumer(self) -> None:
        """Say a stage in this process takes images; until then `put` keeps nothing (an
        image-fetch process without embedding would only fill memory)."""
        with self._lock:
            self._consumers += 1

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Approximate pixel bytes held."""
        return self._bytes

    def put(self, content_hash: str, image: Any) -> bool:
        """Keep `image` (a PIL image) for `content_hash`; False when it was not kept."""
        size = _pixel_bytes(image)
        with self._lock:
            if not self._consumers:
                return False
            now = self._clock()
            self._drop(content_hash)
            while self._items:  # expired first: they are the oldest
                key, (_, _, since) = next(iter(self._items.items()))
                if now - since < self.max_age_s:
                    break
                self._drop(key)
            if len(self._items) >= self.max_items or self._bytes + size > self.max_bytes:
                self.refused += 1
                return False
            self._items[content_hash] = (image, size, now)
            self._bytes += size
            return True

    def take(self, content_hash: str) -> Any | None:
        """Remove and return the image of `content_hash`, or None (then read the stored copy)."""
        with self._lock:
            entry = self._items.get(content_hash)
            if entry is None:
                self.misses += 1
                return None
            self._drop(content_hash)
            self.hits += 1
            return entry[0]

    def _drop(self, content_hash: str) -> None:
        entry = self._items.pop(content_hash, None)
        if entry is not None:
            self._bytes -= entry[1]


def _pixel_bytes(image: Any) -> int:
    width, height = getattr(image, "size", (0, 0))
    return max(1, width * height * len(getattr(image, "getbands", lambda: "RGB")()))


# How much lower ingest threads run than serving ones. At nice 10 a busy ingest thread gets
# about a tenth of a core a serving thread wants; it also yields to other processes on the
# machine, which only matters on a shared one (ingest slows down, searches do not).
INGEST_NICE = 10

# Set while a task works for ingestion (not for a waiting client): shared stages such as the
# embedding batcher then serve interactive requests first.
BULK_WORK: ContextVar[bool] = ContextVar("magpie_bulk_work", default=False)


def ingest_pool(idle: bool = False) -> ThreadPoolExecutor:
    """A low-priority pool for ingest pixel work and model loading (one thread per core, at
    most 4); a composition root builds one per process and shares it between the stages.
    `idle`: SCHED_IDLE as well as nice (settings.ingest_priority, see `lower_thread_priority`)."""
    return low_priority_executor(min(4, os.cpu_count() or 1), "ingest-work", idle=idle)


def low_priority_executor(threads: int, name: str, nice: int = INGEST_NICE,
                          idle: bool = False) -> ThreadPoolExecutor:
    """A thread pool whose threads run at a lower OS priority (Linux nice per thread, and
    the SCHED_IDLE policy when `idle`).

    Ingest's CPU work (decoding, resizing, the model) runs here, so that while both cores
    are busy the kernel schedules the serving threads first: a search waits for a free core
    instead of for a batch of decodes. Threads a pool thread starts (onnxruntime's intra-op
    pool, created with the session) inherit its priority. Where the OS refuses, the threads
    just keep the normal priority.
    """
    return ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=_ingest_thread,
                              initargs=(nice, idle))


def named_executor(threads: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads carry `name` at the OS level too (see `name_os_thread`)."""
    return ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=name_os_thread)


def name_default_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Give `loop` a default executor (what `asyncio.to_thread` uses: file and object-store
    I/O) of the standard size whose threads are named `blocking-io` at the OS level."""
    loop.set_default_executor(named_executor(min(32, (os.cpu_count() or 1) + 4), "blocking-io"))


def _ingest_thread(nice: int, idle: bool) -> None:
    name_os_thread()
    lower_thread_priority(nice, idle=idle)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as exc:  # no libc symbol: threads keep inherited names
        log.debug("no prctl, threads keep their inherited names: %s", exc)
        return None


@contextlib.contextmanager
def os_thread_named(name: str) -> Iterator[None]:
    """Within the block the calling thread carries `name` at the OS level, so that native
    threads started meanwhile (a library's worker pool) inherit it; restored afterwards."""
    prctl = _prctl()
    if prctl is None:
        yield
        return
    before = ctypes.create_string_buffer(16)
    prctl(_PR_GET_NAME, before, 0, 0, 0)
    name_os_thread(name)
    try:
        yield
    finally:
        name_os_thread(before.value.decode(errors="replace"))


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread its Python name at the OS level too (Linux keeps 15 bytes), so
    `top -H`, /proc/<pid>/task/*/comm and profilers tell the pools apart; threads it starts
    (onnxruntime's intra-op pool) inherit the name. Elsewhere a no-op."""
    prctl = _prctl()
    if prctl is not None:
        label = (name or threading.current_thread().name).encode()[:15]
        prctl(_PR_SET_NAME, ctypes.c_char_p(label), 0, 0, 0)


def lower_thread_priority(nice: int = INGEST_NICE, *, idle: bool = False) -> None:
    """Raise the calling thread's nice value by `nice`, and with `idle` move it to the
    SCHED_IDLE policy (Linux: per thread; elsewhere a no-op; lowering needs no privilege).

    Why SCHED_IDLE: under the kernel's EEVDF scheduler a nice-10 thread that holds a core is
    not always preempted at once when a serving thread wakes; an idle-policy thread always
    is. Measured with `bench/search.py` (runs interleaved): search p99 during an ingest
    13.3 / 12.7 ms with it against 19.7 / 18.4 ms at nice 10 alone, ingest alone as fast
    (70.6 against 70.8 images/s); the price is that ingest gets only the CPU nobody else
    wants, so a sustained search load stretches it (21-23 s against 13-14 s in that bench).
    """
    tid = threading.get_native_id()
    try:
        if nice > 0 and hasattr(os, "setpriority"):
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
        if idle and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:  # e.g. a sandbox without setpriority
        log.debug("thread priority unchanged: %s", exc)
