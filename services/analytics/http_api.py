"""The analytics service's internal API: report aggregates, usage, exports and API-call
counts over HTTP, for gateways that cannot open the store themselves (chdb has one owner).

Thin: each route calls the AnalyticsStore the service owns; the report formulas stay in
magpie.analytics.reports, run by the gateway on these aggregates exactly as standalone.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from magpie.common.ports.analytics import AnalyticsStore, ReportQuery, Table

PREFIX = "/internal/v1/analytics"
AGGREGATES = ("event_funnel", "search_volume", "revenue", "click_histogram", "top_products")
router = APIRouter(prefix=PREFIX, tags=["internal"])


class Range(BaseModel):
    app_id: str = Field(min_length=1, max_length=64)
    date_from: date
    date_to: date


class AggregateBody(Range):
    solution: str = Field("", max_length=64)
    max_pos: int = Field(20, ge=1, le=1000)
    limit: int = Field(10, ge=1, le=1000)


class ApiCalls(BaseModel):
    counts: list[tuple[str, str, str, int]]  # app_id, ISO date, endpoint, calls


def _store(request: Request) -> AnalyticsStore:
    return request.app.state.service.analytics


@router.post("/aggregate/{name}")
async def aggregate(name: Literal["event_funnel", "search_volume", "revenue", "click_histogram",
                                  "top_products"],
                    body: AggregateBody, request: Request) -> dict[str, Any]:
    """One of the aggregates a report is computed from: `rows`, and `totals` for tables."""
    store = _store(request)
    q = ReportQuery(body.app_id, body.date_from, body.date_to, body.solution)
    if name == "click_histogram":
        result: Table | list = await store.click_histogram(q, body.max_pos)
    elif name == "top_products":
        result = await store.top_products(q, body.limit)
    else:
        result = await getattr(store, name)(q)
    if isinstance(result, Table):
        return {"rows": result.rows, "totals": result.totals}
    return {"rows": result}


@router.post("/usage")
async def usage(body: Range, request: Request) -> dict[str, Any]:
    """Usage rows per day and kind."""
    return {"rows": await _store(request).usage(body.app_id, body.date_from, body.date_to)}


@router.post("/api_calls")
async def api_calls(body: ApiCalls, request: Request) -> dict[str, int]:
    """Add API call counts (the gateways count them; the store sums them)."""
    await _store(request).insert_api_calls({(a, d, e): n for a, d, e, n in body.counts})
    return {"added": len(body.counts)}


@router.post("/flush")
async def flush(request: Request) -> dict[str, str]:
    """Write every buffered row now."""
    await _store(request).flush()
    return {"status": "ok"}


@router.get("/export")
async def export(app_id: str, date_from: date, date_to: date, fmt: Literal["csv", "parquet"],
                 request: Request) -> StreamingResponse:
    """The raw events of the range, streamed as the store writes them."""
    chunks = _store(request).export_events(app_id, date_from, date_to, fmt)
    return StreamingResponse(chunks, media_type="application/octet-stream")
