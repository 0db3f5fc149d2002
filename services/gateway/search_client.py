"""The VectorIndex port over HTTP: the distributed gateway's view of the search service.

The read side only (get, search, count, facet, value_range, scroll), which is all the query path,
the data routes and the dashboard ask; writes belong to the search service's consumers and
raise here. One pooled HTTP/1.1 client per process; a search service that is down or slow
becomes `Unavailable` (the public API's "system busy").
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from magpie.common.errors import Unavailable
from magpie.common.events.control import FieldSpec
from magpie.common.filters import Filter
from magpie.common.internal_client import InternalClient
from magpie.common.ports.index import FacetCount, Hit, IndexPoint, ScrollPage
from magpie.search import wire


class SearchServiceIndex(InternalClient):
    """Index reads answered by the search service's internal API (magpie.search.http_api)."""

    service = "search"

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, timeout_s=timeout_s, token=token, transport=transport,
                         limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    async def get(self, app_id: str, im_name: str) -> IndexPoint | None:
        """One point with its vector, or None."""
        return wire.point_in((await self._call(app_id, "get", {"im_name": im_name}))["point"])

    async def search(
        self, app_id: str, vector: Sequence[float], *, limit: int, offset: int = 0,
        filter: Filter = (), exclude: Sequence[str] = (), score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The nearest points, best first."""
        body = {"vector": wire.vector_out(vector), "limit": limit, "offset": offset,
                "filter": wire.filter_out(filter), "exclude": list(exclude),
                "score_threshold": score_threshold, "with_vectors": with_vectors}
        return [wire.hit_in(h) for h in (await self._call(app_id, "search", body))["hits"]]

    async def count(self, app_id: str, filter: Filter = (), exclude: Sequence[str] = ()) -> int:
        """How many points satisfy the filter."""
        body = {"filter": wire.filter_out(filter), "exclude": list(exclude)}
        return int((await self._call(app_id, "count", body))["count"])

    async def facet(self, app_id: str, key: str, *, limit: int = 10, filter: Filter = (),
                    exclude: Sequence[str] = ()) -> list[FacetCount]:
        """Value counts of a field."""
        body = {"key": key, "limit": limit, "filter": wire.filter_out(filter), "exclude": list(exclude)}
        return [FacetCount(c["value"], c["count"])
                for c in (await self._call(app_id, "facet", body))["counts"]]

    async def value_range(self, app_id: str, key: str, filter: Filter = (),
                          exclude: Sequence[str] = ()) -> tuple[float, float] | None:
        """The smallest and largest value of a numeric field, or None."""
        body = {"key": key, "filter": wire.filter_out(filter), "exclude": list(exclude)}
        span = (await self._call(app_id, "value_range", body))["range"]
        return None if span is None else (span[0], span[1])

    async def scroll(self, app_id: str, *, limit: int = 256, offset: str | None = None,
                     filter: Filter = (), fields: Sequence[str] | None = None,
                     with_vectors: bool = False) -> ScrollPage:
        """One page of every point under the filter."""
        body = {"limit": limit, "offset": offset, "filter": wire.filter_out(filter),
                "fields": None if fields is None else list(fields), "with_vectors": with_vectors}
        page = await self._call(app_id, "scroll", body)
        return ScrollPage([wire.point_in(p) for p in page["points"]], page["next_offset"])

    # --- writes belong to the search service -------------------------------------------
    async def ensure_collection(self, app_id: str, dim: int, fields: Sequence[FieldSpec]) -> None:
        """Not here: the search service creates collections from item.embedded events."""
        raise _write("ensure_collection")

    async def upsert(self, app_id: str, points: Sequence[IndexPoint]) -> None:
        """Not here: points arrive as item.embedded events."""
        raise _write("upsert")

    async def set_payload(self, app_id: str, im_name: str, payload: dict[str, Any]) -> bool:
        """Not here: payload updates arrive as events."""
        raise _write("set_payload")

    async def delete(self, app_id: str, im_names: Sequence[str]) -> None:
        """Not here: removals arrive as events."""
        raise _write("delete")

    async def delete_payload_keys(self, app_id: str, keys: Sequence[str]) -> None:
        """Not here: schema changes arrive as events."""
        raise _write("delete_payload_keys")

    async def drop(self, app_id: str) -> None:
        """Not here: application deletions arrive as events."""
        raise _write("drop")

    # --- transport ----------------------------------------------------------------------
    async def _call(self, collection: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http().post(f"{wire.PREFIX}/{collection}/{op}", json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"search service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 200:
            return response.json()
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        raise wire.error_in(error or {"detail": f"HTTP {response.status_code}"})


def _write(op: str) -> RuntimeError:
    return RuntimeError(f"SearchServiceIndex.{op}: index writes happen in the search service")
