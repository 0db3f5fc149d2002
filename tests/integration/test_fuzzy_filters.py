"""Fuzzy text filters through the search use cases' vocabulary, on both index adapters: typos
match, far words do not, and a word indexed later is matched exactly at once and fuzzily once
the vocabulary is read again."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf, TextMatch
from magpie.common.ports.index import IndexPoint, VectorIndex
from magpie.search import query
from magpie.search.index.edge import EdgeIndex
from magpie.search.index.qdrant_server import QdrantServerIndex

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]
APP = "fuzzy-shop"
FIELDS = [FieldSpec(name="title", type="text", searchable=True),
          FieldSpec(name="brand", type="string", searchable=True)]
TITLES = ["Red leather jacket", "Blue suede shoes", "Wool cap", "Leather belt", "Running shoe"]


@pytest.fixture(params=["edge", "qdrant-local"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    adapter = EdgeIndex(tmp_path / "edge") if request.param == "edge" else QdrantServerIndex()
    await adapter.start()
    await adapter.ensure_collection(APP, 4, FIELDS)
    rng = np.random.default_rng(1)
    await adapter.upsert(APP, [IndexPoint(f"t{i}", rng.normal(size=4).tolist(),
                                          {"title": t, "brand": "B"}) for i, t in enumerate(TITLES)])
    yield adapter
    await adapter.stop()


def deps_for(index: VectorIndex) -> query.SearchDeps:
    """Search dependencies with a fresh vocabulary cache (fuzzy filters need the index only)."""
    return query.SearchDeps(index=index, schemas=None, models=None, fetcher=None,  # type: ignore[arg-type]
                            objects=None)  # type: ignore[arg-type]


async def matching(deps: query.SearchDeps, text: str) -> set[str]:
    flt = await query.fuzzy(deps, APP, (TextMatch("title", text), AnyOf("brand", ("B",))))
    page = await deps.index.scroll(APP, limit=100, filter=flt)
    assert await deps.index.count(APP, flt) == len(page.points)
    return {p.im_name for p in page.points}


async def test_typos_match_and_far_words_do_not(index: VectorIndex) -> None:
    deps = deps_for(index)
    assert await matching(deps, "lether") == {"t0", "t3"}
    assert await matching(deps, "LEAHTER") == {"t0", "t3"}  # case and a swap
    assert await matching(deps, "shoez") == {"t1", "t4"}  # shoe and shoes, one edit each
    assert await matching(deps, "jakcet wol") == {"t0", "t2"}
    assert await matching(deps, "lthr") == set()
    assert await matching(deps, "!!!") == set()


async def test_a_new_word_matches_exactly_at_once_and_fuzzily_after_a_reread(index: VectorIndex) -> None:
    deps = deps_for(index)
    assert await matching(deps, "cardigan") == set()  # the vocabulary is read here
    await index.upsert(APP, [IndexPoint("t9", [0.1, 0.2, 0.3, 0.4], {"title": "Cardigan", "brand": "B"})])
    assert await matching(deps, "cardigan") == {"t9"}  # exact: the engine's own index
    assert await matching(deps, "cardigna") == set()  # fuzzy: the cached vocabulary lacks it
    assert await matching(deps_for(index), "cardigna") == {"t9"}
