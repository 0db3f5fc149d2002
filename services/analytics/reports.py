"""Analytics reports: one application, a range of UTC days, optionally one solution.

Definitions (the reference found none; these are Magpie's, and the API docs repeat them):
- searches: served searches (distinct reqid) of the solution on that day.
- results_served: Σ result_count of those searches (results returned, all pages).
- views, clicks, add_to_carts, transactions: tracked product_view, product_click,
  add_to_cart and transaction events, each counted once (deduplicated by event_id).
- clicked / carted / converted searches: distinct queryIds with ≥ 1 click / add_to_cart /
  transaction.
- CTR = clicked searches / searches.
- add-to-cart rate = carted searches / searches.
- conversion rate = converted searches / searches.
  (Rates are null when there were no searches. Events count on the day they happen; a
  solution's events are those whose queryId is a search the solution served, from the day
  before the range on.)
- click rank = Σ pos / clicks with a pos (the average clicked position; 1 is the top).
- click histogram: clicks per position 1..20, and one bucket "21+".
- revenue: Σ value of transactions, per currency (never summed across currencies).
- top products: pids by clicks, with their average clicked position.
"""
from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from magpie.common.ports.analytics import AnalyticsStore, ReportQuery

HISTOGRAM_MAX_POS = 20
COUNTS = ("searches", "results_served", "views", "clicks", "add_to_carts", "transactions",
          "clicked_searches", "carted_searches", "converted_searches")


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator rounded to 4 places, or None when the denominator is 0."""
    return round(numerator / denominator, 4) if denominator else None


def metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The report figures of one day (or the whole range) from its raw counts."""
    out = {k: int(row.get(k) or 0) for k in COUNTS}
    searches = out["searches"]
    out["ctr"] = ratio(out["clicked_searches"], searches)
    out["add_to_cart_rate"] = ratio(out["carted_searches"], searches)
    out["conversion_rate"] = ratio(out["converted_searches"], searches)
    out["click_rank"] = ratio(row.get("ranked_pos_sum") or 0, row.get("ranked_clicks") or 0)
    return out


def merge_days(funnel: list[dict[str, Any]], volume: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per day that has searches or events, oldest first, with its metrics."""
    days: dict[str, dict[str, Any]] = {}
    for row in [*volume, *funnel]:
        days.setdefault(row["date"], {}).update(row)
    return [{"date": d, **metrics(days[d])} for d in sorted(days)]


def histogram(rows: list[dict[str, Any]], max_pos: int = HISTOGRAM_MAX_POS) -> list[dict[str, Any]]:
    """Every bucket 1..max_pos and "max_pos+", zeros included, so charts need no gap filling."""
    counts = {int(r["pos"]): int(r["clicks"]) for r in rows}
    buckets = [{"pos": str(p), "clicks": counts.get(p, 0)} for p in range(1, max_pos + 1)]
    return [*buckets, {"pos": f"{max_pos + 1}+", "clicks": counts.get(max_pos + 1, 0)}]


async def report(store: AnalyticsStore, q: ReportQuery, top: int = 10) -> dict[str, Any]:
    """The full report: totals, per-day rows, revenue by currency, click rank, top products."""
    funnel = await store.event_funnel(q)
    volume = await store.search_volume(q)
    revenue, hist, top_rows = await asyncio.gather(
        store.revenue(q), store.click_histogram(q, HISTOGRAM_MAX_POS), store.top_products(q, top))
    totals = metrics({**(volume.totals or {}), **(funnel.totals or {})})
    return {
        "app_id": q.app_id, "from": q.date_from.isoformat(), "to": q.date_to.isoformat(),
        "solution": q.solution or None, "totals": totals,
        "by_day": merge_days(funnel.rows, volume.rows),
        "revenue": [{"currency": r["currency"], "transactions": int(r["transactions"]),
                     "revenue": r["revenue"]} for r in revenue],
        "click_rank": totals["click_rank"], "click_histogram": histogram(hist),
        "top_products": [{"pid": r["pid"], "clicks": int(r["clicks"]), "avg_pos": r["avg_pos"]}
                         for r in top_rows],
    }


async def usage(store: AnalyticsStore, app_id: str, date_from: date, date_to: date) -> dict[str, Any]:
    """Usage statistics: API calls by endpoint, searches by method, events by action, ingested
    items by stage and outcome; totals over the range and per day."""
    rows = await store.usage(app_id, date_from, date_to)
    totals: dict[str, dict[str, int]] = {"api_calls": {}, "searches": {}, "events": {}, "ingest": {}}
    days: dict[str, dict[str, dict[str, int]]] = {}
    group = {"api": "api_calls", "search": "searches", "event": "events", "ingest": "ingest"}
    for r in rows:
        kind, name, n = group[r["kind"]], r["name"], int(r["n"])
        totals[kind][name] = totals[kind].get(name, 0) + n
        day = days.setdefault(r["date"], {"api_calls": {}, "searches": {}, "events": {}, "ingest": {}})
        day[kind][name] = day[kind].get(name, 0) + n
    return {"app_id": app_id, "from": date_from.isoformat(), "to": date_to.isoformat(),
            "totals": totals, "by_day": [{"date": d, **days[d]} for d in sorted(days)]}
