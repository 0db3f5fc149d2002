"""EdgeIndex.rebuild: an application's points move to vectors of another dimension online.

Real qdrant-edge shards; the converted vectors are checked against a brute-force oracle,
writes made during the refill land at once and are caught up before the swap, reads keep
answering, and a failed conversion leaves the index exactly as it was.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from magpie.common.errors import IndexModelMismatch, NotFound
from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf
from magpie.common.ports.index import IndexPoint
from magpie.search.index.edge import EdgeIndex

pytestmark = pytest.mark.integration

APP, DIM, NEW_DIM, N = "app-r", 48, 12, 300
FIELDS = [FieldSpec(name="brand", type="string", searchable=True),
          FieldSpec(name="note", type="string")]
RNG = np.random.default_rng(11)
MATRIX = RNG.normal(size=(DIM, NEW_DIM)).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def catalog() -> list[IndexPoint]:
    vectors = unit(np.random.default_rng(5).normal(size=(N, DIM)))
    return [IndexPoint(f"p{i}", vectors[i].tolist(), {"brand": ["a", "b", "c"][i % 3], "note": f"n{i}"})
            for i in range(N)]


def project(vector: list[float]) -> list[float]:
    return unit(np.asarray(vector, dtype=np.float32) @ MATRIX).tolist()


async def converted(points: list[IndexPoint]) -> list[IndexPoint]:
    await asyncio.sleep(0.01)  # a page at a time, letting other tasks in between
    return [IndexPoint(p.im_name, project(p.vector), {**p.payload, "moved": True}) for p in points]


@pytest.fixture
async def index(tmp_path: Path):  # noqa: ANN201
    index = EdgeIndex(tmp_path / "edge", optimize_after=0)
    await index.start()
    await index.ensure_collection(APP, DIM, FIELDS)
    await index.upsert(APP, catalog())
    yield index
    await index.stop()


def brute_force(points: dict[str, list[float]], query: list[float], k: int) -> list[str]:
    names = list(points)
    scores = unit(np.asarray([points[n] for n in names])) @ np.asarray(query)
    return [names[i] for i in np.argsort(-scores)[:k]]


async def test_every_point_moves_with_its_payload_and_searches_in_the_new_space(index, tmp_path):
    moved = await index.rebuild(APP, NEW_DIM, converted, page=64)
    assert moved == N and await index.count(APP) == N
    new = {p.im_name: project(p.vector) for p in catalog()}
    got = await index.get(APP, "p7")
    assert got is not None and len(got.vector) == NEW_DIM
    assert np.allclose(got.vector, new["p7"], atol=1e-5)
    assert got.payload["moved"] is True and got.payload["note"] == "n7"
    query = new["p42"]
    hits = await index.search(APP, query, limit=10)
    assert [h.im_name for h in hits] == brute_force(new, query, 10)
    # Payload indexes came along: a filter on the searchable field still narrows.
    assert await index.count(APP, (AnyOf("brand", ("b",)),)) == N // 3
    # Old-dimension vectors are refused from now on, with the reindex hint.
    with pytest.raises(IndexModelMismatch):
        await index.upsert(APP, [IndexPoint("late", catalog()[0].vector, {})])
    # The same ids: re-upserting a name replaces its point.
    await index.upsert(APP, [IndexPoint("p7", new["p8"], {"brand": "z"})])
    assert await index.count(APP) == N
    # The new generation is what a restart opens; the old one's files are gone.
    await index.stop()
    shards = sorted(p.name for p in (tmp_path / "edge" / APP).glob("shard-*"))
    reopened = EdgeIndex(tmp_path / "edge", optimize_after=0)
    await reopened.start()
    try:
        assert len(shards) == 1 and await reopened.count(APP) == N
        again = await reopened.get(APP, "p9")
        assert again is not None and np.allclose(again.vector, new["p9"], atol=1e-5)
    finally:
        await reopened.stop()


async def test_writes_during_the_refill_land_at_once_and_are_caught_up_before_the_swap(index):
    gate, reads = asyncio.Event(), []

    async def slow(points: list[IndexPoint]) -> list[IndexPoint]:
        await gate.wait()
        return await converted(points)

    rebuild = asyncio.create_task(index.rebuild(APP, NEW_DIM, slow, page=100))
    await asyncio.sleep(0.05)
    # Writes go on in the old space, without waiting for the rebuild ...
    fresh = IndexPoint("fresh", unit(np.ones(DIM)).tolist(), {"brand": "a", "note": "new"})
    await asyncio.wait_for(index.upsert(APP, [fresh]), 5)
    await index.delete(APP, ["p10"])
    assert await index.set_payload(APP, "p11", {"brand": "zz"})
    await index.delete_payload_keys(APP, ["note"])
    for _ in range(5):  # ... and so do reads
        reads.append(await index.search(APP, catalog()[3].vector, limit=1))
        await asyncio.sleep(0.01)
    assert not rebuild.done() and all(r[0].im_name == "p3" for r in reads)
    gate.set()
    assert await rebuild == N  # N + fresh - p10
    # ... and the new generation caught up on all of them.
    assert await index.count(APP) == N and await index.get(APP, "p10") is None
    got = await index.get(APP, "fresh")
    assert got is not None and np.allclose(got.vector, project(fresh.vector), atol=1e-5)
    eleven = await index.get(APP, "p11")
    assert eleven is not None and eleven.payload["brand"] == "zz" and "note" not in eleven.payload
    assert await index.count(APP, (AnyOf("brand", ("zz",)),)) == 1


async def test_a_failed_conversion_leaves_the_index_as_it_was(index, tmp_path):
    async def broken(points: list[IndexPoint]) -> list[IndexPoint]:
        if any(p.im_name == "p150" for p in points):
            raise ValueError("no projection for this one")
        return await converted(points)

    with pytest.raises(ValueError, match="no projection"):
        await index.rebuild(APP, NEW_DIM, broken, page=50)
    assert await index.count(APP) == N
    got = await index.get(APP, "p1")
    assert got is not None and np.allclose(got.vector, catalog()[1].vector, atol=1e-5)
    assert len(list((tmp_path / "edge" / APP).glob("shard-*"))) == 1
    # Writes of the old dimension still work, and a later rebuild succeeds.
    await index.upsert(APP, [IndexPoint("extra", catalog()[2].vector, {"brand": "c"})])
    assert await index.rebuild(APP, NEW_DIM, converted) == N + 1


async def test_an_application_dropped_during_a_rebuild_ends_it_cleanly(index, tmp_path):
    gate = asyncio.Event()

    async def slow(points: list[IndexPoint]) -> list[IndexPoint]:
        await gate.wait()
        return await converted(points)

    rebuild = asyncio.create_task(index.rebuild(APP, NEW_DIM, slow, page=100))
    await asyncio.sleep(0.05)
    dropping = asyncio.create_task(index.drop(APP))
    await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(NotFound):
        await rebuild
    await dropping
    assert await index.count(APP) == 0 and not (tmp_path / "edge" / APP).exists()
