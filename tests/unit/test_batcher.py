"""EmbeddingBatcher: batching by size and time, concurrency, errors, a responsive loop."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from magpie.common.pipeline import BULK_WORK
from magpie.embedding.batcher import BatcherClosed, EmbeddingBatcher

pytestmark = pytest.mark.unit

DIM = 4


class FakeEmbedder:
    """Embeds integer 'images' as [i, 1, 0, 0], recording each batch; can be slow or fail."""

    name = "fake"
    version = "1"
    dim = DIM

    def __init__(self, delay_s: float = 0.0, poison: set[int] | None = None,
                 fail_all: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.poison = poison or set()
        self.fail_all = fail_all
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def embed(self, images: list[int]) -> np.ndarray:
        with self._lock:
            self.batches.append(list(images))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.delay_s)  # blocking on purpose, like a real model
            if self.fail_all is not None:
                raise self.fail_all
            bad = self.poison.intersection(images)
            if bad:
                raise ValueError(f"cannot decode image {sorted(bad)}")
            out = np.zeros((len(images), DIM), dtype=np.float32)
            out[:, 0] = images
            out[:, 1] = 1
            return out
        finally:
            with self._lock:
                self.in_flight -= 1

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


async def test_full_batches_go_without_waiting_for_the_timeout() -> None:
    fake = FakeEmbedder()
    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=30) as batcher:
        started = time.monotonic()
        vectors = await asyncio.gather(*(batcher.embed(i) for i in range(8)))
        assert time.monotonic() - started < 5  # far below max_wait_s: size closed the batches
    assert fake.sizes == [4, 4]
    assert [int(v[0]) for v in vectors] == list(range(8))  # each caller gets its own row


async def test_a_partial_batch_goes_after_max_wait() -> None:
    fake = FakeEmbedder()
    async with EmbeddingBatcher(fake, max_batch=32, max_wait_s=0.1) as batcher:
        started = time.monotonic()
        vectors = await asyncio.gather(*(batcher.embed(i) for i in range(3)))
        elapsed = time.monotonic() - started
    assert fake.sizes == [3]
    assert 0.09 <= elapsed < 3
    assert [int(v[0]) for v in vectors] == [0, 1, 2]


async def test_late_requests_join_the_next_batch_while_the_thread_is_busy() -> None:
    fake = FakeEmbedder(delay_s=0.3)
    async with EmbeddingBatcher(fake, max_batch=32, max_wait_s=0.01) as batcher:
        first = asyncio.create_task(batcher.embed(0))
        await asyncio.sleep(0.1)  # the first batch (one image) is running now
        rest = [asyncio.create_task(batcher.embed(i)) for i in range(1, 11)]
        await asyncio.gather(first, *rest)
    assert fake.sizes == [1, 10]


async def test_many_concurrent_callers_with_two_threads() -> None:
    fake = FakeEmbedder(delay_s=0.02)
    async with EmbeddingBatcher(fake, max_batch=8, max_wait_s=0.01, threads=2) as batcher:

        async def caller(i: int) -> tuple[int, np.ndarray]:
            await asyncio.sleep((i % 7) * 0.003)  # staggered arrivals
            return i, await batcher.embed(i)

        results = await asyncio.gather(*(caller(i) for i in range(100)))
    assert all(int(vector[0]) == i for i, vector in results)
    assert sorted(i for batch in fake.batches for i in batch) == list(range(100))
    assert max(fake.sizes) <= 8
    assert len(fake.batches) < 50  # requests were grouped
    assert fake.max_in_flight == 2  # both threads worked at once, never more
    assert all(name.startswith("embed") for name in fake.threads)


async def test_an_error_reaches_every_caller_of_the_batch() -> None:
    fake = FakeEmbedder(fail_all=RuntimeError("model exploded"))
    batcher = EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.embed(i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "model exploded" in str(r) for r in results)
    fake.fail_all = None  # the batcher survives a failed batch
    assert int((await batcher.embed(7))[0]) == 7
    await batcher.close()


async def test_one_bad_image_fails_alone() -> None:
    fake = FakeEmbedder(poison={2})
    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.05) as batcher:
        results = await asyncio.gather(*(batcher.embed(i) for i in range(4)),
                                       return_exceptions=True)
    assert isinstance(results[2], ValueError)
    assert [int(r[0]) for i, r in enumerate(results) if i != 2] == [0, 1, 3]
    assert fake.sizes == [4, 1, 1, 1, 1]  # the batch, then each image on its own


async def test_without_isolation_the_whole_batch_fails() -> None:
    fake = FakeEmbedder(poison={2})
    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.05,
                                isolate_failures=False) as batcher:
        results = await asyncio.gather(*(batcher.embed(i) for i in range(4)),
                                       return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert fake.sizes == [4]


async def test_a_wrong_number_of_vectors_is_an_error() -> None:
    class Short(FakeEmbedder):
        def embed(self, images: list[int]) -> np.ndarray:
            return super().embed(images)[:-1]

    async with EmbeddingBatcher(Short(), max_batch=2, max_wait_s=0.05,
                                isolate_failures=False) as batcher:
        results = await asyncio.gather(batcher.embed(1), batcher.embed(2),
                                       return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 vectors for 2" in str(r) for r in results)


async def test_the_event_loop_keeps_ticking_during_a_slow_embed() -> None:
    fake = FakeEmbedder(delay_s=0.5)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.0) as batcher:
        ticking = asyncio.create_task(ticker())
        await batcher.embed(1)
        stop.set()
        await ticking
    # ~50 ticks fit in 0.5 s; a blocked loop would manage one or two.
    assert ticks >= 10


async def test_a_cancelled_caller_is_dropped_from_the_batch() -> None:
    fake = FakeEmbedder()
    async with EmbeddingBatcher(fake, max_batch=8, max_wait_s=0.1) as batcher:
        keep = [asyncio.create_task(batcher.embed(i)) for i in (1, 2)]
        dropped = asyncio.create_task(batcher.embed(3))
        await asyncio.sleep(0)
        dropped.cancel()
        results = await asyncio.gather(*keep)
    assert [int(r[0]) for r in results] == [1, 2]
    assert fake.batches == [[1, 2]]


async def test_close_embeds_what_is_queued_and_refuses_new_requests() -> None:
    fake = FakeEmbedder(delay_s=0.05)
    batcher = EmbeddingBatcher(fake, max_batch=2, max_wait_s=10)
    queued = [asyncio.create_task(batcher.embed(i)) for i in range(5)]
    await asyncio.sleep(0)
    await batcher.close()
    assert [int((await task)[0]) for task in queued] == list(range(5))
    with pytest.raises(BatcherClosed):
        await batcher.embed(9)


async def test_embed_many_keeps_order() -> None:
    async with EmbeddingBatcher(FakeEmbedder(), max_batch=3, max_wait_s=0.01) as batcher:
        vectors = await batcher.embed_many(list(range(7)))
        empty = await batcher.embed_many([])
    assert vectors.shape == (7, DIM) and vectors[:, 0].tolist() == list(range(7))
    assert empty.shape == (0, DIM)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EmbeddingBatcher(FakeEmbedder(), max_batch=0)


# --- the two lanes: interactive requests first, bulk (ingest) work deferred, bounded -------

async def _bulk_embed(batcher: EmbeddingBatcher, image: int) -> np.ndarray:
    token = BULK_WORK.set(True)  # as the embedding stage's handler marks its task
    try:
        return await batcher.embed(image)
    finally:
        BULK_WORK.reset(token)


async def test_bulk_work_waits_while_an_interactive_request_runs() -> None:
    fake = FakeEmbedder(delay_s=0.15)
    async with EmbeddingBatcher(fake, max_batch=8, max_wait_s=0.0, max_defer_s=5) as batcher:
        query = asyncio.create_task(batcher.embed(1000))
        await asyncio.sleep(0.03)  # the query's batch is running
        bulk = asyncio.gather(*(_bulk_embed(batcher, i) for i in range(4)))
        await query
        vectors = await bulk
    assert [int(v[0]) for v in vectors] == [0, 1, 2, 3]
    # The bulk batch started only once the query's was over: never both at once.
    assert fake.batches == [[1000], [0, 1, 2, 3]] and fake.max_in_flight == 1
    assert batcher.deferrals == 1


async def test_the_deferral_is_bounded_so_ingest_never_starves() -> None:
    fake = FakeEmbedder(delay_s=0.4)
    async with EmbeddingBatcher(fake, max_batch=8, max_wait_s=0.0, max_defer_s=0.05) as batcher:
        query = asyncio.create_task(batcher.embed(1000))
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        vector = await _bulk_embed(batcher, 7)
        # Ran beside the long query after the 50 ms deferral, not after the query's 400 ms.
        assert time.perf_counter() - started < 0.4 + 0.3
        assert fake.max_in_flight == 2
        await query
    assert int(vector[0]) == 7


async def test_bulk_runs_on_low_priority_threads_and_queries_on_their_own() -> None:
    fake = FakeEmbedder()
    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.0) as batcher:
        await batcher.embed(1)
        await _bulk_embed(batcher, 2)
    assert {name.rsplit("_", 1)[0] for name in fake.threads} == {"embed-interactive", "embed-bulk"}


async def test_bulk_alone_is_batched_without_deferral() -> None:
    fake = FakeEmbedder(delay_s=0.01)
    async with EmbeddingBatcher(fake, max_batch=4, max_wait_s=0.05) as batcher:
        vectors = await asyncio.gather(*(_bulk_embed(batcher, i) for i in range(8)))
    assert sorted(int(v[0]) for v in vectors) == list(range(8))
    assert fake.sizes == [4, 4] and batcher.deferrals == 0
