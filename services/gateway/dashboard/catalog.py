"""Catalog browser: items with thumbnails, metadata and filters; thumbnails behind an
ownership check."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import InvalidRequest, NotFound
from magpie.common.filters import AnyOf, Between, Condition, Filter, TextMatch
from magpie.gateway.controlplane import schema as schema_uc
from magpie.gateway.dashboard.session import AppPage
from magpie.gateway.dashboard.web import DashboardRoute, render
from magpie.image_fetch.state import thumbnail_key
from magpie.ingestion.tables import CatalogItem
from magpie.search.fq import parse_filters
from magpie.search.handlers import SYSTEM_KEY

router = APIRouter(route_class=DashboardRoute)
PAGE_SIZE = 24
# Metadata filters are checked on the items themselves (the index port has no listing), so a
# filtered view looks at this many catalog rows at most; the page says so.
SCAN_LIMIT = 2000


@dataclass
class Item:
    """One catalog item as the browser shows it."""

    im_name: str
    indexed: bool
    im_url: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


def matches(values: dict[str, Any], cond: Condition) -> bool:
    """Whether stored metadata satisfies one parsed `fq` condition."""
    value = values.get(cond.field)
    if value is None:
        return False
    if isinstance(cond, AnyOf):
        return any(value == v or str(value) == str(v) for v in cond.values)
    if isinstance(cond, Between):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return (cond.low is None or number >= cond.low) and (cond.high is None or number <= cond.high)
    if isinstance(cond, TextMatch):  # any word, case-insensitive: close to the index's full-text match
        return bool(set(cond.text.lower().split()) & set(str(value).lower().split()))
    return False


async def _names(db: Any, app_id: str, q: str, state: str, offset: int, limit: int) -> tuple[list[Any], int]:
    where = [CatalogItem.app_id == app_id]
    if q:
        where.append(CatalogItem.im_name.contains(q, autoescape=True))
    if state in ("indexed", "pending"):
        where.append(CatalogItem.indexed.is_(state == "indexed"))
    async with db() as s:
        total = await s.scalar(select(func.count()).select_from(CatalogItem).where(*where))
        rows = await s.execute(select(CatalogItem.im_name, CatalogItem.indexed).where(*where)
                               .order_by(CatalogItem.im_name).offset(offset).limit(limit))
        return list(rows), int(total or 0)


async def _item(index: Any, app_id: str, im_name: str, indexed: bool) -> Item:
    point = await index.get(app_id, im_name) if indexed else None
    if point is None:
        return Item(im_name, indexed)
    values = dict(point.payload)
    system = values.pop(SYSTEM_KEY, {}) or {}
    values.pop("im_name", None)
    return Item(im_name, indexed, system.get("im_url"), values)


async def browse(ctx: Any, q: str, state: str, filters: Filter, page: int) -> tuple[list[Item], int, bool]:
    """One page of items, the number that match, and whether the scan limit cut the count."""
    app_id, index = ctx.app.app_id, ctx.container.index
    if not filters:
        rows, total = await _names(ctx.db, app_id, q, state, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        return [await _item(index, app_id, n, ok) for n, ok in rows], total, False
    rows, total = await _names(ctx.db, app_id, q, "indexed", 0, SCAN_LIMIT)
    hits = [it for it in [await _item(index, app_id, n, ok) for n, ok in rows]
            if all(matches(it.values, c) for c in filters)]
    return hits[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], len(hits), total > SCAN_LIMIT


@router.get("/apps/{app_id}/catalog")
async def catalog(request: Request, ctx: AppPage, q: str = Query("", max_length=128), state: str = "",
                  fq: list[str] = Query(default_factory=list),
                  page: int = Query(1, ge=1, le=10_000)) -> Response:
    """The catalog, filterable by name, state and searchable fields (the `fq` syntax of search)."""
    assert ctx.app is not None
    current = await schema_uc.get_schema(ctx.db, ctx.member.account_id, ctx.app.app_id)
    fields = [Field(f.name, f.type, f.searchable) for f in current.fields]
    errors: dict[str, str] = {}
    fqs = [line.strip() for f in fq for line in f.splitlines() if line.strip()]  # one per textarea line
    try:
        filters = parse_filters(fqs, fields)
    except InvalidRequest as err:
        errors["fq"], filters = err.detail, ()
    items, total, cut = await browse(ctx, q, state, filters, page) if not errors else ([], 0, False)
    return render(request, "catalog.html", ctx, items=items, total=total, cut=cut, scan_limit=SCAN_LIMIT,
                  page=page, pages=max(1, -(-total // PAGE_SIZE)), errors=errors,
                  values={"q": q, "state": state, "fq": "\n".join(fqs)},
                  searchable=[f for f in current.fields if f.searchable],
                  shown=[f.name for f in current.fields if f.type != "text"], status=400 if errors else 200)


@router.get("/apps/{app_id}/thumbnail")
async def thumbnail(ctx: AppPage, im_name: str = Query(..., min_length=1, max_length=128)) -> Response:
    """An item's thumbnail, only for members of the account that owns the application."""
    assert ctx.app is not None
    try:
        data = await ctx.container.objects.get(thumbnail_key(ctx.app.app_id, im_name))
    except NotFound:
        return Response(status_code=404)
    # Private: thumbnails are the merchant's data; short-lived so a re-fetched image shows soon.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
