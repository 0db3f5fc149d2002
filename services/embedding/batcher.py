"""Groups concurrent single-image requests into model batches, run off the event loop.

A batch closes when it holds `max_batch` images or `max_wait_s` after its first image
arrived, whichever comes first; while every worker thread is busy, images keep joining the
next batch (up to `max_batch`), so batches grow under load and stay small when idle.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from magpie.common.ports.embedder import ImageEmbedder

if TYPE_CHECKING:
    from PIL.Image import Image

# (image, the caller's future, loop time it arrived)
_Request = tuple["Image", "asyncio.Future[np.ndarray]", float]


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request was taken."""


class EmbeddingBatcher:
    """Async front of an ImageEmbedder: `await embed(image)` from any number of tasks."""

    def __init__(self, embedder: ImageEmbedder, max_batch: int = 32, max_wait_s: float = 0.05,
                 threads: int = 1, isolate_failures: bool = True) -> None:
        if max_batch < 1 or max_wait_s < 0 or threads < 1:
            raise ValueError("max_batch and threads must be >= 1, max_wait_s >= 0")
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        # On a failed batch, retry its images one by one so one bad image fails alone.
        self.isolate_failures = isolate_failures
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="embed")
        self._pending: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(threads)
        self._running: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        self._closed = False

    async def embed(self, image: Image) -> np.ndarray:
        """The unit vector of `image`, computed in a batch with concurrent requests."""
        if self._closed:
            raise BatcherClosed("embedding batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((image, future, loop.time()))
        self._arrived.set()
        if self._collector is None:
            self._collector = asyncio.create_task(self._collect(), name="embedding-batcher")
        return await future

    async def embed_many(self, images: Sequence[Image]) -> np.ndarray:
        """A (len(images), dim) array; the images join the shared batches."""
        if not images:
            return np.empty((0, self.embedder.dim), dtype=np.float32)
        return np.stack(await asyncio.gather(*(self.embed(image) for image in images)))

    async def _collect(self) -> None:
        try:
            await self._collect_forever()
        except BaseException as exc:
            # Never leave a caller waiting on a collector that is gone.
            self._closed = True
            while self._pending:
                _, future, _ = self._pending.popleft()
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    _fail(future, BatcherClosed(f"embedding batcher failed: {exc!r}"))
            raise

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            # Counted from the oldest request: it may have waited for a free thread already.
            deadline = self._pending[0][2] + self.max_wait_s
            while len(self._pending) < self.max_batch and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            await self._slots.acquire()
            # Taken only now: requests that came while waiting for a free thread join in.
            batch = []
            while self._pending and len(batch) < self.max_batch:
                request = self._pending.popleft()
                if not request[1].done():  # a caller that was cancelled needs no work
                    batch.append(request)
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        images = [image for image, _, _ in batch]
        try:
            try:
                vectors = await loop.run_in_executor(self._executor, self._embed, images)
            except Exception as exc:
                if not self.isolate_failures or len(batch) == 1:
                    for _, future, _ in batch:
                        _fail(future, exc)
                    return
                for image, future, _ in batch:
                    if future.done():
                        continue
                    try:
                        vector = await loop.run_in_executor(self._executor, self._embed, [image])
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
            self._slots.release()

    def _embed(self, images: list[Image]) -> np.ndarray:
        vectors = self.embedder.embed(images)
        if len(vectors) != len(images):
            raise RuntimeError(f"{self.embedder.name} returned {len(vectors)} vectors "
                               f"for {len(images)} images")
        return vectors

    async def close(self) -> None:
        """Embed what is already queued, refuse new requests, stop the threads."""
        self._closed = True
        self._arrived.set()
        tasks = [*([self._collector] if self._collector else []), *self._running]
        await asyncio.gather(*tasks, return_exceptions=True)  # callers got the errors already
        if self._running:  # batches the collector started while it drained
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=True)

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
