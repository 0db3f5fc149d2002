"""Several views of one query through a real index: the merged top k is the brute-force one."""
from __future__ import annotations

import numpy as np
import pytest

from magpie.common.ports.index import Hit, IndexPoint
from magpie.search.index.edge import EdgeIndex
from magpie.search.views import merge_views, nearest

pytestmark = pytest.mark.integration


async def test_merged_views_equal_the_brute_force_ranking(tmp_path):
    rng = np.random.default_rng(7)
    catalog = rng.normal(size=(400, 16)).astype(np.float32)
    catalog /= np.linalg.norm(catalog, axis=1, keepdims=True)
    index = EdgeIndex(tmp_path / "edge", optimize_after=0)
    await index.start()
    try:
        await index.ensure_collection("app", 16, [])
        await index.upsert("app", [IndexPoint(f"p{i}", v.tolist(), {}) for i, v in enumerate(catalog)])
        merged_cases = 0
        for _ in range(30):
            views = rng.normal(size=(4, 16)).astype(np.float32)
            views /= np.linalg.norm(views, axis=1, keepdims=True)
            got = await nearest(index, "app", [v.tolist() for v in views], limit=10)
            scores = views @ catalog.T
            per_view = [[(f"p{j}", float(s[j])) for j in np.argsort(-s)] for s in scores]
            # The same decision on complete rankings: merged best scores, or the whole's.
            rankings = [[Hit(n, sc) for n, sc in ranking] for ranking in per_view]
            full = merge_views(rankings)
            merged_cases += full is not rankings[0]
            expected = sorted(full, key=lambda h: -h.score)[:10]
            assert [h.im_name for h in sorted(got, key=lambda h: -h.score)[:10]] == \
                [h.im_name for h in expected]
            for hit, want in zip(sorted(got, key=lambda h: -h.score)[:10], expected):
                assert hit.score == pytest.approx(want.score, abs=1e-5)
        assert 0 < merged_cases < 30  # both outcomes of the margin rule were checked
    finally:
        await index.stop()
