"""Paging over the engine's ranking: equal scores keep one order across calls."""
import asyncio
import random

import pytest

from magpie.common.ports.index import Hit
from magpie.search.params import SearchParams
from magpie.search.query import TIE_SLACK, in_stable_order, ranked_page

pytestmark = pytest.mark.unit


class TieShufflingIndex:
    """Answers like an engine that orders equal scores differently on every call."""

    def __init__(self, scores: dict[str, float], seed: int = 0) -> None:
        self.scores, self.rng, self.counts, self.limits = scores, random.Random(seed), 0, []

    async def search(self, collection, vector, *, limit, offset=0, filter=(), exclude=(),  # noqa: A002, ANN001
                     score_threshold=None, with_vectors=False):  # noqa: ANN001
        self.limits.append(limit)
        hits = [Hit(n, s) for n, s in self.scores.items() if n not in exclude]
        self.rng.shuffle(hits)  # ties end up in a new order each time
        hits.sort(key=lambda h: -h.score)  # stable: only ties stay shuffled
        return hits[offset:offset + limit]

    async def count(self, collection, filter=(), exclude=()) -> int:  # noqa: A002, ANN001
        self.counts += 1
        return len(self.scores)


def pages(index, n_pages: int, limit: int) -> list[list[str]]:  # noqa: ANN001
    async def run() -> list[list[str]]:
        out = []
        for page in range(1, n_pages + 1):
            ranked = await ranked_page(index, "app", [0.0], SearchParams(page=page, limit=limit), ())
            out.append([h.im_name for h in ranked.hits])
        return out
    return asyncio.run(run())


def test_copies_straddling_a_page_boundary_show_once_each():
    # Six copies of one image (equal scores) around the end of page 1 of 4.
    scores = {"a": 0.99, "b": 0.95, **{f"copy{i}": 0.9 for i in range(6)}, "c": 0.5, "d": 0.4}
    for seed in range(20):
        got = pages(TieShufflingIndex(scores, seed), 3, 4)
        flat = [n for page in got for n in page]
        assert sorted(flat) == sorted(scores) and len(flat) == len(set(flat)), got
        assert flat[:2] == ["a", "b"] and flat[2:8] == [f"copy{i}" for i in range(6)]


def test_total_without_a_count_when_every_result_fits():
    index = TieShufflingIndex({f"i{k}": 1 - k / 100 for k in range(7)})
    ranked = asyncio.run(ranked_page(index, "app", [0.0], SearchParams(page=2, limit=4), ()))
    assert [h.im_name for h in ranked.hits] == ["i4", "i5", "i6"] and ranked.total == 7
    assert index.counts == 0 and index.limits == [4 + 4 + TIE_SLACK]


def test_total_is_counted_when_more_results_exist():
    index = TieShufflingIndex({f"i{k:03d}": 1 - k / 1000 for k in range(100)})
    ranked = asyncio.run(ranked_page(index, "app", [0.0], SearchParams(page=1, limit=10), ()))
    assert len(ranked.hits) == 10 and ranked.total == 100 and index.counts == 1


def test_stable_order_is_best_first_then_by_name():
    hits = [Hit("b", 0.5), Hit("a", 0.5), Hit("z", 0.9), Hit("c", 0.1)]
    assert [h.im_name for h in in_stable_order(hits)] == ["z", "a", "b", "c"]
