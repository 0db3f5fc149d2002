"""Groups concurrent single-image requests into model batches, run off the event loop.

A batch closes when it holds `max_batch` images or `max_wait_s` after its first image
arrived, whichever comes first; while every worker thread is busy, images keep joining the
next batch (up to `max_batch`), so batches grow under load and stay small when idle.

Two lanes share the model. Requests made for ingestion (`BULK_WORK` set by the caller's
task) go to the bulk lane; the others (an upload search: a client is waiting) to the
interactive lane, which has its own `threads` threads at normal priority. The bulk lane runs on
low-priority threads and holds a batch back while interactive requests are queued or
running, for at most `max_defer_s` per batch, so ingestion slows down under queries but
never stops.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from magpie.common.pipeline import BULK_WORK, INGEST_NICE, low_priority_executor, named_executor
from magpie.common.ports.embedder import ImageEmbedder

if TYPE_CHECKING:
    from PIL.Image import Image

# (image, the caller's future, loop time it arrived)
_Request = tuple["Image", "asyncio.Future[np.ndarray]", float]


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request was taken."""


class _Lane:
    """One queue of requests with its own threads and batch collector."""

    def __init__(self, name: str, executor: ThreadPoolExecutor, threads: int) -> None:
        self.name = name
        self.executor = executor
        self.pending: deque[_Request] = deque()
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(threads)
        self.running: set[asyncio.Task[None]] = set()
        self.collector: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()  # set when nothing is queued or running
        self.idle.set()

    def busy(self) -> bool:
        return bool(self.pending) or bool(self.running)

    def update_idle(self) -> None:
        if self.busy():
            self.idle.clear()
        else:
            self.idle.set()


class EmbeddingBatcher:
    """Async front of an ImageEmbedder: `await embed(image)` from any number of tasks."""

    def __init__(self, embedder: ImageEmbedder, max_batch: int = 32, max_wait_s: float = 0.05,
                 threads: int = 1, isolate_failures: bool = True, max_defer_s: float = 0.25,
                 bulk_nice: int = INGEST_NICE, bulk_idle: bool = False) -> None:
        if max_batch < 1 or max_wait_s < 0 or threads < 1 or max_defer_s < 0:
            raise ValueError("max_batch and threads must be >= 1, max_wait_s and max_defer_s >= 0")
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_defer_s = max_defer_s
        # On a failed batch, retry its images one by one so one bad image fails alone.
        self.isolate_failures = isolate_failures
        self._interactive = _Lane("interactive", named_executor(threads, "embed-interactive"),
                                  threads)
        self._bulk = _Lane("bulk", low_priority_executor(threads, "embed-bulk", bulk_nice,
                                                         idle=bulk_idle), threads)
        self._closed = False
        self.deferrals = 0  # bulk batches held back for interactive work (for tests, metrics)

    async def embed(self, image: Image) -> np.ndarray:
        """The unit vector of `image`, computed in a batch with concurrent requests."""
        if self._closed:
            raise BatcherClosed("embedding batcher is closed")
        lane = self._bulk if BULK_WORK.get() else self._interactive
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        lane.pending.append((image, future, loop.time()))
        lane.idle.clear()
        lane.arrived.set()
        if lane.collector is None:
            lane.collector = asyncio.create_task(self._collect(lane), name=f"embedding-{lane.name}")
        return await future

    async def embed_many(self, images: Sequence[Image]) -> np.ndarray:
        """A (len(images), dim) array; the images join the shared batches."""
        if not images:
            return np.empty((0, self.embedder.dim), dtype=np.float32)
        return np.stack(await asyncio.gather(*(self.embed(image) for image in images)))

    async def _collect(self, lane: _Lane) -> None:
        try:
            await self._collect_forever(lane)
        except BaseException as exc:
            # Never leave a caller waiting on a collector that is gone.
            self._closed = True
            while lane.pending:
                _, future, _ = lane.pending.popleft()
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    _fail(future, BatcherClosed(f"embedding batcher failed: {exc!r}"))
            lane.update_idle()
            raise

    async def _collect_forever(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not lane.pending:
                if self._closed:
                    return
                lane.arrived.clear()
                await lane.arrived.wait()
            # Counted from the oldest request: it may have waited for a free thread already.
            deadline = lane.pending[0][2] + self.max_wait_s
            while len(lane.pending) < self.max_batch and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                lane.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.arrived.wait(), remaining)
            if lane is self._bulk:
                await self._yield_to_interactive()
            await lane.slots.acquire()
            # Taken only now: requests that came while waiting for a free thread join in.
            batch = []
            while lane.pending and len(batch) < self.max_batch:
                request = lane.pending.popleft()
                if not request[1].done():  # a caller that was cancelled needs no work
                    batch.append(request)
            if not batch:
                lane.slots.release()
                lane.update_idle()
                continue
            task = loop.create_task(self._run(lane, batch))
            lane.running.add(task)
            task.add_done_callback(lambda t, lane=lane: (lane.running.discard(t), lane.update_idle()))

    async def _yield_to_interactive(self) -> None:
        """The query-priority gate: hold the bulk batch while interactive work is queued or
        running, at most `max_defer_s`."""
        if self._closed or not self._interactive.busy() or self.max_defer_s == 0:
            return
        self.deferrals += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interactive.idle.wait(), self.max_defer_s)

    async def _run(self, lane: _Lane, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        images = [image for image, _, _ in batch]
        try:
            try:
                vectors = await loop.run_in_executor(lane.executor, self._embed, images)
            except Exception as exc:
                if not self.isolate_failures or len(batch) == 1:
                    for _, future, _ in batch:
                        _fail(future, exc)
                    return
                for image, future, _ in batch:
                    if future.done():
                        continue
                    try:
                        vector = await loop.run_in_executor(lane.executor, self._embed, [image])
                    except Exception as single_exc:
                        _fail(future, single_exc)
                    else:
                        _resolve(future, vector[0])
                return
            for (_, future, _), vector in zip(batch, vectors, strict=True):
                _resolve(future, vector)
        except asyncio.CancelledError:
            for _, future, _ in batch:
                future.cancel()
            raise
        finally:
            lane.slots.release()

    def _embed(self, images: list[Image]) -> np.ndarray:
        vectors = self.embedder.embed(images)
        if len(vectors) != len(images):
            raise RuntimeError(f"{self.embedder.name} returned {len(vectors)} vectors "
                               f"for {len(images)} images")
        return vectors

    async def close(self) -> None:
        """Embed what is already queued, refuse new requests, stop the threads."""
        self._closed = True
        lanes = (self._interactive, self._bulk)
        for lane in lanes:
            lane.arrived.set()
        tasks = [t for lane in lanes for t in (*([lane.collector] if lane.collector else []),
                                               *lane.running)]
        await asyncio.gather(*tasks, return_exceptions=True)  # callers got the errors already
        running = [t for lane in lanes for t in lane.running]
        if running:  # batches the collectors started while they drained
            await asyncio.gather(*running, return_exceptions=True)
        for lane in lanes:
            lane.executor.shutdown(wait=True)

    async def __aenter__(self) -> EmbeddingBatcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _resolve(future: asyncio.Future[np.ndarray], vector: np.ndarray) -> None:
    if not future.done():
        # A copy, so one caller's vector does not keep the whole batch array alive.
        future.set_result(np.array(vector, dtype=np.float32, copy=True))


def _fail(future: asyncio.Future[np.ndarray], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
