"""Search use cases run once more when the index changed dimension under them."""
from __future__ import annotations

import pytest

from magpie.common.errors import IndexModelMismatch
from magpie.search.query import across_rebuild

pytestmark = pytest.mark.unit


async def test_a_mismatch_met_once_is_run_again_and_a_lasting_one_raises() -> None:
    calls: list[str] = []

    @across_rebuild
    async def once(app_id: str) -> str:
        calls.append(app_id)
        if len(calls) == 1:  # the swap happened between reading a vector and searching
            raise IndexModelMismatch.dimensions(app_id, 1024, 2408)
        return "answer"

    assert await once("a") == "answer" and calls == ["a", "a"]

    @across_rebuild
    async def always(app_id: str) -> str:
        calls.append(app_id)
        raise IndexModelMismatch.dimensions(app_id, 1024, 2408)

    calls.clear()
    with pytest.raises(IndexModelMismatch):
        await always("b")
    assert calls == ["b", "b"]
