"""One vector-index scenario run against both adapters, and a test that they answer alike.

The embedded qdrant-edge index and the Qdrant server adapter (on qdrant-client's local mode,
the server's stand-in) must give the same ids in the same order, with the same scores. 200
points of 64-d keep every search exact, so a brute-force oracle can check both as well.
"""
from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from magpie.common.errors import IndexModelMismatch, InvalidRequest, NotFound
from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf, Between, Filter, TextMatch
from magpie.common.ports.index import IndexPoint, VectorIndex
from magpie.search.index.edge import EdgeIndex
from magpie.search.index.qdrant_server import QdrantServerIndex

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

DIM, N, SEED = 64, 200, 7
A, B = "app-a", "app-b"
FIELDS = [
    FieldSpec(name="brand", type="string", searchable=True),
    FieldSpec(name="year", type="int", searchable=True),
    FieldSpec(name="price", type="float", searchable=True),
    FieldSpec(name="title", type="text", searchable=True),
    FieldSpec(name="note", type="string"),
]
BRANDS = ["Nike", "nike", "Adidas", "Puma"]
WORDS = ["Red", "blue", "running", "Shoe", "leather", "Jacket", "wool", "cap"]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _catalog() -> list[IndexPoint]:
    rng = np.random.default_rng(SEED)
    vectors = _unit(rng, N)
    points = []
    for i in range(N):
        # Every tenth price sits exactly on a range bound used below.
        price = round(float(rng.uniform(1, 100)), 2)
        price = 10.0 if i % 10 == 0 else 20.0 if i % 10 == 1 else price
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
        payload = {"brand": BRANDS[i % 4], "year": 2018 + i % 6, "price": price,
                   "title": title, "note": f"n{i}"}
        points.append(IndexPoint(f"p{i}", vectors[i].tolist(), payload))
    return points


CATALOG = _catalog()
QUERIES = _unit(np.random.default_rng(SEED + 1), 4).tolist()


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W_]+", text)}


# (label, filter, the oracle's predicate)
FILTERS: list[tuple[str, Filter, Callable[[dict[str, Any]], bool]]] = [
    ("string exact, case-sensitive", (AnyOf("brand", ("Nike",)),), lambda p: p["brand"] == "Nike"),
    ("string OR", (AnyOf("brand", ("Nike", "Puma")),), lambda p: p["brand"] in ("Nike", "Puma")),
    ("int exact", (AnyOf("year", (2020,)),), lambda p: p["year"] == 2020),
    ("int OR", (AnyOf("year", (2019, 2023)),), lambda p: p["year"] in (2019, 2023)),
    ("float exact", (AnyOf("price", (10.0,)),), lambda p: p["price"] == 10.0),
    ("float range inclusive", (Between("price", 10.0, 20.0),),
     lambda p: 10.0 <= p["price"] <= 20.0),
    ("open low", (Between("price", None, 10.0),), lambda p: p["price"] <= 10.0),
    ("open high", (Between("price", 90.0, None),), lambda p: p["price"] >= 90.0),
    ("int range", (Between("year", 2019, 2021),), lambda p: 2019 <= p["year"] <= 2021),
    ("text word", (TextMatch("title", "running"),), lambda p: "running" in _words(p["title"])),
    ("text any word, any case", (TextMatch("title", "LEATHER cap"),),
     lambda p: bool(_words(p["title"]) & {"leather", "cap"})),
    ("AND", (AnyOf("brand", ("Nike",)), Between("year", 2019, 2021)),
     lambda p: p["brand"] == "Nike" and 2019 <= p["year"] <= 2021),
    ("no match", (AnyOf("brand", ("Reebok",)),), lambda p: p["brand"] == "Reebok"),
]


class Oracle:
    """Brute-force cosine search over what the index should hold."""

    def __init__(self, points: list[IndexPoint]) -> None:
        self.items = {p.im_name: (np.array(p.vector), dict(p.payload)) for p in points}

    def rank(self, query: list[float], pred: Callable[[dict[str, Any]], bool] = lambda p: True,
             exclude: tuple[str, ...] = ()) -> list[tuple[str, float]]:
        q = np.array(query) / np.linalg.norm(query)
        scored = [(name, float(v @ q / np.linalg.norm(v))) for name, (v, p) in self.items.items()
                  if pred(p) and name not in exclude]
        return sorted(scored, key=lambda s: -s[1])

    def count(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for _, p in self.items.values() if pred(p))


def _hits(hits: list[Any]) -> list[tuple[str, float]]:
    return [(h.im_name, h.score) for h in hits]


def _same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [n for n, _ in got] == [n for n, _ in want]
    assert all(math.isclose(g, w, abs_tol=1e-4) for (_, g), (_, w) in zip(got, want))


async def scenario(index: VectorIndex) -> list[Any]:
    """The shared scenario; returns what it saw, for the congruence test."""
    seen: list[Any] = []
    oracle = Oracle(CATALOG)
    await index.ensure_collection(A, DIM, FIELDS)
    await index.ensure_collection(A, DIM, FIELDS)  # idempotent
    await index.upsert(A, CATALOG)
    assert await index.count(A) == N
    # Another dimension means another model built the index: a 503 that names the fix.
    with pytest.raises(IndexModelMismatch, match=f"magpie reindex --app {A}") as refused:
        await index.ensure_collection(A, DIM + 1, FIELDS)
    assert refused.value.http_status == 503 and not refused.value.retryable
    with pytest.raises(IndexModelMismatch, match=f"holds {DIM}-d vectors, the model now makes 2-d"):
        await index.upsert(A, [IndexPoint("short", [1.0, 0.0], {})])
    with pytest.raises(IndexModelMismatch):
        await index.search(A, [1.0, 0.0], limit=3)
    assert await index.count(A) == N

    # Re-upserting an im_name replaces the point.
    moved = IndexPoint("p0", CATALOG[1].vector, {**CATALOG[0].payload, "brand": "Adidas"})
    await index.upsert(A, [moved])
    oracle.items["p0"] = (np.array(moved.vector), dict(moved.payload))
    assert await index.count(A) == N
    got = await index.get(A, "p0")
    assert got is not None and got.payload["brand"] == "Adidas" and got.payload["im_name"] == "p0"

    # Nearest first, score = cosine similarity; the item itself comes first.
    hits = _hits(await index.search(A, CATALOG[5].vector, limit=10))
    assert hits[0][0] == "p5" and math.isclose(hits[0][1], 1.0, abs_tol=1e-5)
    _same(hits, oracle.rank(CATALOG[5].vector)[:10])
    seen.append(hits)
    for q in QUERIES:
        hits = _hits(await index.search(A, q, limit=10))
        _same(hits, oracle.rank(q)[:10])
        seen.append(hits)

    # exclude, and offset paging (with and without a filter).
    hits = _hits(await index.search(A, CATALOG[5].vector, limit=10, exclude=["p5", "p7"]))
    _same(hits, oracle.rank(CATALOG[5].vector, exclude=("p5", "p7"))[:10])
    seen.append(hits)
    pages = [_hits(await index.search(A, QUERIES[0], limit=5, offset=o)) for o in (0, 5, 10)]
    _same(pages[0] + pages[1] + pages[2], oracle.rank(QUERIES[0])[:15])
    nike = FILTERS[0][1]
    page = _hits(await index.search(A, QUERIES[0], limit=4, offset=4, filter=nike))
    _same(page, oracle.rank(QUERIES[0], FILTERS[0][2])[4:8])
    seen += [pages, page]

    # Every kind of filter: search and count agree with the oracle.
    for label, flt, pred in FILTERS:
        hits = _hits(await index.search(A, QUERIES[1], limit=10, filter=flt))
        _same(hits, oracle.rank(QUERIES[1], pred)[:10])
        count = await index.count(A, flt)
        assert count == oracle.count(pred), label
        seen.append((label, hits, count))
    # The inclusive range really holds both bounds.
    bounds = {h.payload["price"] for h in await index.search(
        A, QUERIES[1], limit=N, filter=(Between("price", 10.0, 20.0),))}
    assert {10.0, 20.0} <= bounds

    # Facets: exact value counts, most frequent first then by value; numeric min and max;
    # both under a filter and an exclusion.
    for label, flt, pred in (("all", (), lambda p: True), FILTERS[5], FILTERS[11]):
        for key, kind in (("brand", str), ("year", int)):
            got_facets = await index.facet(A, key, limit=10, filter=flt, exclude=["p3"])
            want = Counter(p[key] for n, (_, p) in oracle.items.items() if pred(p) and n != "p3")
            assert [(f.value, f.count) for f in got_facets] == sorted(
                want.items(), key=lambda kv: (-kv[1], kv[0])), (label, key)
            assert all(isinstance(f.value, kind) for f in got_facets)
            seen.append((label, key, [(f.value, f.count) for f in got_facets]))
        prices = [p["price"] for n, (_, p) in oracle.items.items() if pred(p) and n != "p3"]
        span = await index.value_range(A, "price", filter=flt, exclude=["p3"])
        assert span == (min(prices), max(prices)), label
        assert await index.count(A, flt, exclude=["p3"]) == len(prices)
        seen.append((label, span))
    assert await index.value_range(A, "year", filter=FILTERS[-1][1]) is None
    assert await index.facet(A, "brand", filter=FILTERS[-1][1]) == []
    top = await index.facet(A, "year", limit=2)
    assert len(top) == 2 and top[0].count >= top[1].count

    # A score threshold cuts the ranking; vectors come back when asked for.
    hits = _hits(await index.search(A, QUERIES[1], limit=N, score_threshold=0.1))
    _same(hits, [h for h in oracle.rank(QUERIES[1]) if h[1] >= 0.1])
    with_vectors = await index.search(A, CATALOG[5].vector, limit=3, with_vectors=True)
    assert with_vectors[0].vector is not None
    assert np.allclose(with_vectors[0].vector, CATALOG[5].vector, atol=1e-5)
    assert (await index.search(A, CATALOG[5].vector, limit=1))[0].vector is None
    seen.append(hits)

    # set_payload merges; a missing point gives False.
    assert await index.set_payload(A, "p1", {"brand": "Reebok", "extra": 1})
    got = await index.get(A, "p1")
    assert got is not None
    assert got.payload == {**CATALOG[1].payload, "brand": "Reebok", "extra": 1, "im_name": "p1"}
    assert await index.count(A, (AnyOf("brand", ("Reebok",)),)) == 1
    assert not await index.set_payload(A, "nope", {"brand": "x"})
    assert await index.get(A, "nope") is None
    oracle.items["p1"][1]["brand"] = "Reebok"

    # delete is idempotent and ignores missing items.
    await index.delete(A, ["p2", "nope"])
    await index.delete(A, ["p2"])
    del oracle.items["p2"]
    assert await index.count(A) == N - 1
    assert await index.get(A, "p2") is None
    hits = _hits(await index.search(A, CATALOG[2].vector, limit=10))
    assert "p2" not in [n for n, _ in hits]
    _same(hits, oracle.rank(CATALOG[2].vector)[:10])
    seen.append(hits)

    # delete_payload_keys removes a key everywhere and nothing else.
    await index.delete_payload_keys(A, ["note"])
    got = await index.get(A, "p3")
    assert got is not None and "note" not in got.payload
    assert got.payload["brand"] == CATALOG[3].payload["brand"]
    assert np.allclose(got.vector, CATALOG[3].vector, atol=1e-5)
    lower_nike = oracle.count(lambda p: p["brand"] == "nike")
    assert await index.count(A, (AnyOf("brand", ("nike",)),)) == lower_nike

    seen.append(await _scrolls(index, oracle))

    # Two applications are isolated, even with the same im_name.
    await index.ensure_collection(B, DIM, FIELDS)
    other = [IndexPoint(f"p{i}", q, {"brand": "Nike", "year": 2020, "price": 1.0, "title": "b"})
             for i, q in zip((5, 500, 501), QUERIES)]
    await index.upsert(B, other)
    assert await index.count(B) == 3 and await index.count(A) == N - 1
    hits = _hits(await index.search(B, CATALOG[5].vector, limit=10))
    assert sorted(n for n, _ in hits) == ["p5", "p500", "p501"]
    assert not any(math.isclose(s, 1.0, abs_tol=1e-5) for _, s in hits)  # A's p5 is not there
    assert await index.get(B, "p6") is None
    a5 = await index.get(A, "p5")
    assert a5 is not None and np.allclose(a5.vector, CATALOG[5].vector, atol=1e-5)
    seen.append(hits)

    # drop removes one application only; a dropped or unknown one reads as empty.
    await index.drop(B)
    await index.drop(B)
    assert await index.count(B) == 0 and await index.search(B, QUERIES[0], limit=5) == []
    assert await index.get(B, "p5") is None and not await index.set_payload(B, "p5", {"x": 1})
    await index.delete(B, ["p5"])
    with pytest.raises(NotFound):
        await index.upsert(B, other)
    assert await index.count(A) == N - 1
    await index.ensure_collection(B, DIM, FIELDS)
    assert await index.count(B) == 0
    return seen


async def _scroll_all(index: VectorIndex, app: str, **options: Any) -> list[Any]:
    """Every page of a scroll, following the cursor to the end."""
    pages, offset = [], None
    while True:
        page = await index.scroll(app, offset=offset, **options)
        pages.append(page.points)
        if page.next_offset is None:
            return pages
        assert page.points, "a page before the end is never empty"
        offset = page.next_offset


async def _scrolls(index: VectorIndex, oracle: Oracle) -> list[Any]:
    """Scroll: every point once, pages in id order, filters as search applies them."""
    seen: list[Any] = []
    pages = await _scroll_all(index, A, limit=37)
    names = [p.im_name for page in pages for p in page]
    assert sorted(names) == sorted(oracle.items) and len(pages) == -(-len(names) // 37)
    assert all(len(page) == 37 for page in pages[:-1])
    first = pages[0][0]
    want = {k: v for k, v in oracle.items[first.im_name][1].items() if k != "note"}  # removed
    assert first.vector == [] and first.payload == {**want, "im_name": first.im_name}
    seen.append(names)
    for label, flt, pred in FILTERS:
        got = [p.im_name for page in await _scroll_all(index, A, limit=16, filter=flt)
               for p in page]
        assert sorted(got) == sorted(n for n, (_, p) in oracle.items.items() if pred(p)), label
        assert got == [n for n in names if n in set(got)], label  # the same id order
        seen.append((label, got))
    # Narrowed payloads and vectors on request; one page that holds everything ends at once.
    page = await index.scroll(A, limit=N, fields=["brand"], with_vectors=True)
    assert page.next_offset is None and len(page.points) == len(oracle.items)
    for point in page.points:
        assert point.payload == {"im_name": point.im_name,
                                 "brand": oracle.items[point.im_name][1]["brand"]}
        assert np.allclose(point.vector, oracle.items[point.im_name][0], atol=1e-5)
    # A cursor resumes where its page ended, even after the point it names was deleted.
    head = await index.scroll(A, limit=5)
    resumed = await index.scroll(A, limit=5, offset=head.next_offset)
    assert [p.im_name for p in head.points + resumed.points] == names[:10]
    kept = await index.get(A, names[5])
    assert kept is not None
    await index.delete(A, [names[5]])
    resumed = await index.scroll(A, limit=5, offset=head.next_offset)
    assert [p.im_name for p in resumed.points] == names[6:11]
    await index.upsert(A, [kept])
    assert (await index.scroll(A, limit=0)).points == []
    assert await index.scroll("never-created", limit=5) == ([], None)
    with pytest.raises(InvalidRequest):
        await index.scroll(A, offset="not-a-cursor")
    return seen


def _edge(tmp_path: Path, **options: Any) -> EdgeIndex:
    return EdgeIndex(tmp_path / "edge", **options)


ADAPTERS: dict[str, Callable[[Path], VectorIndex]] = {
    "edge": _edge,
    "qdrant-local": lambda tmp_path: QdrantServerIndex(),
}


@pytest.fixture(params=list(ADAPTERS))
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    """A started, empty index of each kind."""
    adapter = ADAPTERS[request.param](tmp_path)
    await adapter.start()
    yield adapter
    await adapter.stop()


async def test_scenario(index: VectorIndex) -> None:
    await scenario(index)


async def test_adapters_answer_alike(tmp_path: Path) -> None:
    transcripts = []
    for make in ADAPTERS.values():
        adapter = make(tmp_path)
        await adapter.start()
        try:
            transcripts.append(await scenario(adapter))
        finally:
            await adapter.stop()
    edge, server = transcripts
    assert len(edge) == len(server)
    for a, b in zip(edge, server):
        assert _names(a) == _names(b)
        assert np.allclose(_scores(a), _scores(b), atol=1e-5)


def _names(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], float):
        return value[0]
    return [_names(v) for v in value] if isinstance(value, (list, tuple)) else value


def _scores(value: Any) -> list[float]:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], float):
        return [value[1]]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _scores(v)]
    return []


# --- qdrant-edge only: persistence and background optimisation -------------------------------


async def test_edge_persists_across_restart(tmp_path: Path) -> None:
    index = _edge(tmp_path)
    await index.start()
    await scenario(index)
    before = _hits(await index.search(A, QUERIES[2], limit=10, filter=(AnyOf("year", (2020,)),)))
    await index.stop()

    index = _edge(tmp_path)
    await index.start()
    try:
        assert await index.count(A) == N - 1 and await index.count(B) == 0
        # Field types came back from disk: the int filter still matches exactly.
        after = await index.search(A, QUERIES[2], limit=10, filter=(AnyOf("year", (2020,)),))
        _same(_hits(after), before)
        got = await index.get(A, "p1")
        assert got is not None and got.payload["brand"] == "Reebok" and "note" not in got.payload
        assert await index.get(A, "p2") is None
    finally:
        await index.stop()


async def _loaded(index: EdgeIndex) -> None:
    await index.start()
    await index.ensure_collection(A, DIM, FIELDS)
    await index.upsert(A, CATALOG)


async def test_edge_optimizes_in_background(tmp_path: Path) -> None:
    index = _edge(tmp_path, optimize_after=0, indexing_threshold_kb=1)
    await _loaded(index)
    try:
        assert (await index.info(A) or {})["indexed_vectors"] == 0
        oracle = Oracle(CATALOG)
        lags: list[float] = []

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - t - 0.01)

        tick = asyncio.create_task(ticker())
        task = asyncio.create_task(index.optimize(A))
        # Reads and writes go on while the graph is built; the writes land in the new shard.
        late = IndexPoint("late", QUERIES[3],
                          {"brand": "Nike", "year": 2020, "price": 5.0, "title": "x"})
        while not task.done():
            _same(_hits(await index.search(A, QUERIES[0], limit=10)), oracle.rank(QUERIES[0])[:10])
            await asyncio.sleep(0.02)
            if "late" not in oracle.items:
                await index.upsert(A, [late])
                await index.delete(A, ["p9"])
                oracle.items["late"] = (np.array(late.vector), late.payload)
                del oracle.items["p9"]
        assert await task
        tick.cancel()
        assert max(lags) < 0.5  # the event loop never stalled on the build

        info = await index.info(A)
        assert info is not None and info["indexed_vectors"] > 0 and not info["optimizing"]
        assert await index.count(A) == N and await index.get(A, "p9") is None
        assert (await index.get(A, "late")) is not None
        for q in QUERIES:
            _same(_hits(await index.search(A, q, limit=10)), oracle.rank(q)[:10])
        assert len(list((tmp_path / "edge" / A).glob("shard-*"))) == 1  # the old one is gone
    finally:
        await index.stop()


async def test_edge_optimizes_after_enough_writes(tmp_path: Path) -> None:
    index = _edge(tmp_path, optimize_after=150, indexing_threshold_kb=1)
    await _loaded(index)
    try:
        for _ in range(300):
            info = await index.info(A)
            if info and info["indexed_vectors"] == N and not info["optimizing"]:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"no background optimisation: {info}")
    finally:
        await index.stop()


async def test_edge_stop_during_optimisation_keeps_data(tmp_path: Path) -> None:
    index = _edge(tmp_path, optimize_after=0, indexing_threshold_kb=1)
    await _loaded(index)
    task = asyncio.create_task(index.optimize(A))
    await asyncio.sleep(0.05)
    await index.stop()
    await task  # ends (the build is abandoned, or was done) without raising
    index = _edge(tmp_path)
    await index.start()
    try:
        assert await index.count(A) == N
        assert len(list((tmp_path / "edge" / A).glob("shard-*"))) == 1
    finally:
        await index.stop()


async def test_edge_auto_optimisation_that_changes_nothing_does_not_repeat(tmp_path: Path) -> None:
    # Segments under the indexing threshold: the engine has nothing to build.
    index = _edge(tmp_path, optimize_after=150, indexing_threshold_kb=1_000_000)
    await _loaded(index)
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if not (await index.info(A) or {}).get("optimizing"):
                break
        await asyncio.sleep(0.5)
        info = await index.info(A)
        assert info is not None and not info["optimizing"] and info["indexed_vectors"] == 0
    finally:
        await index.stop()
