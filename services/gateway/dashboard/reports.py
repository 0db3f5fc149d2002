"""Report / Analytics and usage statistics pages; figures come from magpie.analytics.reports."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from magpie.analytics import reports
from magpie.common.errors import InvalidRequest, Unavailable
from magpie.common.ports.analytics import ReportQuery
from magpie.gateway.api import reports as api_reports
from magpie.gateway.dashboard.session import AppPage
from magpie.gateway.dashboard.web import DashboardRoute, render

router = APIRouter(route_class=DashboardRoute)
_DAY = TypeAdapter(date)
# The API's own parameter types, so the page refuses exactly what the API refuses.
_TOP = TypeAdapter(api_reports.Top)
_SOLUTION = TypeAdapter(api_reports.Solution)


def _check(adapter: TypeAdapter, name: str, raw: str, errors: dict[str, str]) -> Any:
    try:
        return adapter.validate_python(raw) if raw else None
    except ValidationError as exc:
        errors[name] = exc.errors()[0]["msg"]
        return None


def days_between(first: date, last: date) -> list[str]:
    """Every day of the range, so charts show empty days as zero instead of joining across them."""
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def series(by_day: list[dict[str, Any]], days: list[str], keys: tuple[str, ...], zero: Any) -> dict[str, list]:
    """Per-key lists over `days`, `zero` where a day has no row."""
    rows = {r["date"]: r for r in by_day}
    return {k: [rows[d].get(k, zero) if d in rows else zero for d in days] for k in keys}


def _range(values: dict[str, str], errors: dict[str, str]) -> tuple[date, date] | None:
    first = _check(_DAY, "from", values["from"], errors)
    last = _check(_DAY, "to", values["to"], errors)
    if errors:
        return None
    try:
        return api_reports.date_range(date_from=first, date_to=last)
    except InvalidRequest as err:
        errors["from"] = err.detail
        return None


def _inputs(request: Request) -> tuple[dict[str, str], dict[str, str], Any, Any]:
    q = request.query_params
    values = {"from": q.get("from", ""), "to": q.get("to", ""), "solution": q.get("solution", ""),
              "top": q.get("top", "10")}
    errors: dict[str, str] = {}
    rng = _range(values, errors)
    try:
        store = api_reports.analytics_store(request)
    except Unavailable as err:
        errors["store"], store = err.detail, None
    return values, errors, rng, store


@router.get("/apps/{app_id}/analytics")
async def analytics(request: Request, ctx: AppPage) -> Response:
    """Charts over time of CTR, add-to-cart and conversion rates, click rank, the click-position
    histogram and top products, for a date range and optionally one solution."""
    assert ctx.app is not None
    values, errors, rng, store = _inputs(request)
    top = _check(_TOP, "top", values["top"], errors) or 10
    solution = _check(_SOLUTION, "solution", values["solution"], errors) or ""
    if errors or rng is None or store is None:
        return render(request, "analytics.html", ctx, status=503 if "store" in errors else 400, values=values,
                      errors=errors, report=None, charts=None, solutions=[])
    report = await reports.report(store, ReportQuery(ctx.app.app_id, rng[0], rng[1], solution), top)
    usage = await reports.usage(store, ctx.app.app_id, *rng)
    days = days_between(*rng)
    charts = {
        "days": days,
        "rates": series(report["by_day"], days, ("ctr", "add_to_cart_rate", "conversion_rate"), None),
        "click_rank": series(report["by_day"], days, ("click_rank",), None)["click_rank"],
        "volume": series(report["by_day"], days,
                         ("searches", "views", "clicks", "add_to_carts", "transactions"), 0),
        "histogram": report["click_histogram"],
        "top_products": report["top_products"],
    }
    values.update({"from": rng[0].isoformat(), "to": rng[1].isoformat()})
    return render(request, "analytics.html", ctx, values=values, report=report, charts=charts,
                  solutions=sorted(usage["totals"]["searches"]))


@router.get("/apps/{app_id}/usage")
async def usage(request: Request, ctx: AppPage) -> Response:
    """Searches by method, tracked events by action, ingested items by outcome; items and storage."""
    assert ctx.app is not None
    values, errors, rng, store = _inputs(request)
    items = await ctx.container.index.count(ctx.app.app_id)
    stored = await ctx.container.objects.usage_bytes(f"{ctx.app.app_id}/")
    if errors or rng is None or store is None:
        return render(request, "usage.html", ctx, status=503 if "store" in errors else 400, values=values,
                      errors=errors, usage=None, charts=None, items=items, stored=stored)
    stats = await reports.usage(store, ctx.app.app_id, *rng)
    days = days_between(*rng)
    totals = [{"date": d["date"], **{k: sum(d[k].values()) for k in ("searches", "events", "ingest")}}
              for d in stats["by_day"]]
    charts = {"days": days, "volume": series(totals, days, ("searches", "events", "ingest"), 0)}
    values.update({"from": rng[0].isoformat(), "to": rng[1].isoformat()})
    return render(request, "usage.html", ctx, values=values, usage=stats, charts=charts, items=items,
                  stored=stored)
