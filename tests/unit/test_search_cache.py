"""The search hot path's caches: stale values served while one background re-read runs."""
import asyncio
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from magpie.common.errors import InvalidCredentials
from magpie.gateway.api import search
from magpie.gateway.controlplane.access import AppAccess
from magpie.search.cache import RefreshingCache

pytestmark = pytest.mark.unit


class Loader:
    def __init__(self, *results):
        self.results, self.calls = list(results), 0

    async def __call__(self):
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fresh_values_are_served_from_memory():
    cache, load = RefreshingCache(60), Loader("v1")
    assert [await cache.get("k", load) for _ in range(3)] == ["v1"] * 3 and load.calls == 1


async def test_stale_values_are_served_while_one_refresh_runs():
    cache, load = RefreshingCache(0.0), Loader("v1", "v2")
    assert await cache.get("k", load) == "v1"
    assert await cache.get("k", load) == "v1" and await cache.get("k", load) == "v1"  # no wait
    await settle()
    assert load.calls == 2 and await cache.get("k", Loader("v3")) == "v2"


async def test_a_refresh_that_says_gone_evicts_other_failures_keep_the_value():
    cache, load = RefreshingCache(0.0, evict_on=(KeyError,)), Loader("v1", RuntimeError(), KeyError())
    await cache.get("k", load)
    await cache.get("k", load)  # refresh fails with RuntimeError: stale value kept
    await settle()
    assert await cache.get("k", load) == "v1"  # refresh fails with KeyError: evicted
    await settle()
    assert await cache.get("k", Loader("v9")) == "v9"
    with pytest.raises(ValueError):  # a first load's failure reaches the caller
        await cache.get("new", Loader(ValueError()))


def request(query: bytes = b"", headers: list | None = None) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/search", "query_string": query,
                    "headers": headers or []})


async def test_search_keys_are_remembered_and_bad_ones_never(monkeypatch):
    calls = []

    async def app_access(req, db):
        calls.append(req.query_params.get("access_key"))
        if req.query_params.get("access_key") == "bad":
            raise InvalidCredentials()
        return AppAccess("app_1", "ak", "search")

    monkeypatch.setattr(search, "app_access", app_access)
    deps = SimpleNamespace(access=RefreshingCache(60, evict_on=(InvalidCredentials,)))
    monkeypatch.setattr(search, "search_deps", lambda request: deps)
    for _ in range(3):
        assert (await search.search_access(request(b"access_key=good"), None)).app_id == "app_1"
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await search.search_access(request(b"access_key=bad"), None)
    assert calls == ["good", "bad", "bad"]
    await search.search_access(request(headers=[(b"authorization", b"Basic YWs6c2s=")]), None)
    assert len(calls) == 4 and all(len(k) == 64 for k in deps.access._entries)  # digests only
