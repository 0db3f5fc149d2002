"""The search service's internal query API: index reads over HTTP, for the gateways.

Thin: each route decodes its body (magpie.search.wire), asks the index the service owns and
encodes the answer. The query logic (ranking, facets, recommendations) stays in
magpie.search.query, which the gateway runs against this API through SearchServiceIndex, so
the public routes are the same in both modes.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from magpie.common.ports import VectorIndex
from magpie.search import wire

router = APIRouter(prefix=wire.PREFIX, tags=["internal"])


class Scope(BaseModel):
    """The points a read covers."""

    filter: list[dict[str, Any]] = []
    exclude: list[str] = []


class GetBody(BaseModel):
    im_name: str


class SearchBody(Scope):
    vector: str  # base64 float32
    limit: int = Field(ge=0, le=10_000)
    offset: int = Field(0, ge=0)
    score_threshold: float | None = None
    with_vectors: bool = False


class FacetBody(Scope):
    key: str
    limit: int = Field(10, ge=0, le=10_000)


class RangeBody(Scope):
    key: str


class ScrollBody(BaseModel):
    limit: int = Field(256, ge=0, le=10_000)
    offset: str | None = None
    filter: list[dict[str, Any]] = []
    fields: list[str] | None = None
    with_vectors: bool = False


def _index(request: Request) -> VectorIndex:
    return request.app.state.service.index


@router.post("/{collection}/get")
async def get(collection: str, body: GetBody, request: Request) -> dict[str, Any]:
    """One point with its vector, or null."""
    return {"point": wire.point_out(await _index(request).get(collection, body.im_name))}


@router.post("/{collection}/search")
async def search(collection: str, body: SearchBody, request: Request) -> dict[str, Any]:
    """The nearest points under the filter."""
    hits = await _index(request).search(
        collection, wire.vector_in(body.vector), limit=body.limit, offset=body.offset,
        filter=wire.filter_in(body.filter), exclude=body.exclude,
        score_threshold=body.score_threshold, with_vectors=body.with_vectors)
    return {"hits": [wire.hit_out(h) for h in hits]}


@router.post("/{collection}/count")
async def count(collection: str, body: Scope, request: Request) -> dict[str, int]:
    """How many points pass the filter."""
    return {"count": await _index(request).count(collection, wire.filter_in(body.filter), body.exclude)}


@router.post("/{collection}/facet")
async def facet(collection: str, body: FacetBody, request: Request) -> dict[str, Any]:
    """Value counts of a field over the points that pass the filter."""
    counts = await _index(request).facet(collection, body.key, limit=body.limit,
                                         filter=wire.filter_in(body.filter), exclude=body.exclude)
    return {"counts": [wire.facet_out(f) for f in counts]}


@router.post("/{collection}/value_range")
async def value_range(collection: str, body: RangeBody, request: Request) -> dict[str, Any]:
    """The smallest and largest value of a numeric field, or null."""
    span = await _index(request).value_range(collection, body.key, wire.filter_in(body.filter),
                                             body.exclude)
    return {"range": None if span is None else list(span)}


@router.post("/{collection}/scroll")
async def scroll(collection: str, body: ScrollBody, request: Request) -> dict[str, Any]:
    """One page of every point under the filter, and the cursor of the next."""
    page = await _index(request).scroll(collection, limit=body.limit, offset=body.offset,
                                        filter=wire.filter_in(body.filter), fields=body.fields,
                                        with_vectors=body.with_vectors)
    return {"points": [wire.point_out(p) for p in page.points], "next_offset": page.next_offset}
