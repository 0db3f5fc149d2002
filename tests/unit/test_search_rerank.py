"""After the engine: score bounds, dedup by score, MMR diversity, colour vectors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from magpie.common.ports.index import Hit
from magpie.search.colors import COLOR_DIM, color_vector, item_color_vector
from magpie.search.rerank import dedup_by_score, mmr, to_score, within_scores

pytestmark = pytest.mark.unit


def hits(*scores):
    return [Hit(f"i{n}", s) for n, s in enumerate(scores)]


def test_scores_are_cosines_clipped_to_0_1():
    assert (to_score(-0.3), to_score(0.0), to_score(0.42), to_score(1.0000001)) == (0.0, 0.0, 0.42, 1.0)
    kept = within_scores(hits(0.95, 0.8, 0.5, -0.1), 0.0, 0.8)
    assert [h.im_name for h in kept] == ["i1", "i2", "i3"]
    assert [h.im_name for h in within_scores(hits(0.95, 0.8, 0.5), 0.5, 0.8)] == ["i1", "i2"]


def test_dedup_drops_hits_scoring_like_the_last_kept_one():
    ranked = hits(0.9, 0.9, 0.9000004, 0.85, 0.84, 0.7)
    assert [h.im_name for h in dedup_by_score(ranked, 0.0)] == ["i0", "i3", "i4", "i5"]
    assert [h.im_name for h in dedup_by_score(ranked, 0.02)] == ["i0", "i3", "i5"]
    assert dedup_by_score([], 0.1) == []


def _vhits(vectors, query):
    q = np.asarray(query, dtype=float) / np.linalg.norm(query)
    out = []
    for n, v in enumerate(vectors):
        v = np.asarray(v, dtype=float) / np.linalg.norm(v)
        out.append(Hit(f"i{n}", float(v @ q), vector=v.tolist()))
    return sorted(out, key=lambda h: -h.score)


def test_mmr_spreads_a_page_over_distinct_products():
    # Five near-identical photos of product A (most similar to the query), then B and C.
    rng = np.random.default_rng(1)
    a, b, c = np.eye(8)[0], np.eye(8)[1], np.eye(8)[2]
    vectors = [a + 0.05 * rng.normal(size=8) * [0, 0, 0, 1, 1, 1, 1, 1] for _ in range(5)]
    vectors += [0.8 * a + b, 0.8 * a + c]
    query = a + 0.3 * b + 0.3 * c
    ranked = _vhits(vectors, query)
    plain = [h.im_name for h in ranked[:3]]
    diverse = mmr(ranked, 3)
    names = [h.im_name for h in diverse.picked]
    assert names[0] == plain[0]  # the best match stays first
    assert {"i5", "i6"} <= set(names)  # then the other products, not more copies of A
    assert diverse.eligible == 3  # the other four copies of A count as duplicates


def test_mmr_drops_near_duplicates_of_the_query():
    query = [1.0, 0.0, 0.0]
    ranked = _vhits([[1, 0.01, 0], [1, 1, 0], [1, 0, 1]], query)
    assert [h.im_name for h in mmr(ranked, 10).picked] == ["i1", "i2"] or \
        [h.im_name for h in mmr(ranked, 10).picked] == ["i2", "i1"]
    assert mmr([], 5).picked == [] and mmr(ranked, 0).picked == []


@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_mmr_pages_are_prefixes_of_longer_runs(seed, k):
    rng = np.random.default_rng(seed)
    ranked = _vhits(rng.normal(size=(30, 6)), rng.normal(size=6))
    short, long = mmr(ranked, k).picked, mmr(ranked, 20).picked
    assert [h.im_name for h in short] == [h.im_name for h in long][:len(short)]
    assert len({h.im_name for h in long}) == len(long)


def test_colour_vectors_rank_by_how_much_of_the_colour_an_item_shows():
    red = np.array(color_vector([("ff0000", 100)]))
    assert red.shape == (COLOR_DIM,) and np.isclose(np.linalg.norm(red), 1.0, atol=1e-5)

    def score(colors):
        return float(red @ np.array(item_color_vector(colors)))

    assert score(["ff0000", "ffffff"]) > score(["ffffff", "ff0000"]) > score(["ffffff", "0000ff", "ff0000"])
    assert score(["aa0000"]) > score(["ff8800"]) > score(["0000ff"])  # dark red, orange, blue
    assert item_color_vector([]) is None and item_color_vector(["zzzzzz", "12"]) is None
    mixed = np.array(color_vector([("ff0000", 50), ("0000ff", 50)]))
    assert mixed @ np.array(item_color_vector(["0000ff", "ff0000"])) > 0.8
