"""The search service's internal API is a faithful VectorIndex: the shared index scenario
(tests/integration/test_index_congruence.py, checked against a brute-force oracle) run with
every read going through SearchServiceIndex → HTTP → magpie.search.http_api → qdrant-edge
sees what qdrant-edge itself answers, typed errors included.

The app runs in-process (httpx's ASGI transport) so the index lives on the test's event loop;
tests/integration/test_distributed.py covers the same routes between processes over sockets.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from magpie.common.errors import InvalidCredentials
from magpie.common.service_http import service_app
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings
from magpie.gateway.search_client import SearchServiceIndex
from magpie.search import http_api
from magpie.search.index.edge import EdgeIndex
from tests.integration.test_index_congruence import _names, _scores, scenario

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]
TOKEN = "internal-test-token"


class ReadsOverHttp:
    """Writes straight to the engine (the search service's consumers do that), reads through
    the internal API, as the distributed gateway reads."""

    def __init__(self, engine: EdgeIndex, remote: SearchServiceIndex) -> None:
        self.engine, self.remote = engine, remote

    async def ensure_collection(self, app_id: str, dim: int, fields: Sequence[Any]) -> None:
        await self.engine.ensure_collection(app_id, dim, fields)

    async def upsert(self, app_id: str, points: Sequence[Any]) -> None:
        await self.engine.upsert(app_id, points)

    async def set_payload(self, app_id: str, im_name: str, payload: dict[str, Any]) -> bool:
        return await self.engine.set_payload(app_id, im_name, payload)

    async def delete(self, app_id: str, im_names: Sequence[str]) -> None:
        await self.engine.delete(app_id, im_names)

    async def delete_payload_keys(self, app_id: str, keys: Sequence[str]) -> None:
        await self.engine.delete_payload_keys(app_id, keys)

    async def drop(self, app_id: str) -> None:
        await self.engine.drop(app_id)

    def __getattr__(self, name: str) -> Any:  # get, search, count, facet, value_range, scroll
        return getattr(self.remote, name)


def internal_app(engine: EdgeIndex) -> Any:
    settings = Settings(_env_file=None, internal_token=SecretStr(TOKEN))
    app = service_app("search", settings, lambda s: None, [http_api.router])  # type: ignore[arg-type]
    app.state.service = Service("search", index=engine, ready=True)  # no lifespan in-process
    return app


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EdgeIndex]:
    index = EdgeIndex(tmp_path / "edge")
    await index.start()
    yield index
    await index.stop()


async def _remote(engine: EdgeIndex, token: str | None = TOKEN) -> SearchServiceIndex:
    remote = SearchServiceIndex("http://search", token=token,
                                transport=httpx.ASGITransport(app=internal_app(engine)))
    await remote.start()
    return remote


async def test_reads_over_http_answer_as_the_engine_does(engine: EdgeIndex, tmp_path: Path) -> None:
    remote = await _remote(engine)
    try:
        over_http = await scenario(ReadsOverHttp(engine, remote))  # type: ignore[arg-type]
    finally:
        await remote.stop()
    direct_engine = EdgeIndex(tmp_path / "direct")
    await direct_engine.start()
    try:
        direct = await scenario(direct_engine)
    finally:
        await direct_engine.stop()
    assert len(over_http) == len(direct)
    for a, b in zip(over_http, direct):
        assert _names(a) == _names(b)
        assert np.allclose(_scores(a), _scores(b), atol=1e-6)


async def test_the_internal_api_wants_the_token_and_answers_bad_bodies_in_its_format(engine):
    stranger = await _remote(engine, token="wrong")
    try:
        with pytest.raises(InvalidCredentials):
            await stranger.count("app")
    finally:
        await stranger.stop()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=internal_app(engine)),
                                 base_url="http://search",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        r = await client.post("/internal/v1/index/app/search", json={"vector": "AAAA", "limit": -1})
        assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidRequest"
        assert "limit" in r.json()["error"]["detail"]
        r = await client.post("/internal/v1/index/app/count", json={"filter": [{"op": "near"}]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidRequest"
        assert (await client.get("/ready")).status_code == 200  # probes need no token
