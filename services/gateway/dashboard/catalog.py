"""Catalog browser: items with thumbnails, metadata and filters; thumbnails behind an
ownership check.

Without filters the browser lists the catalog's rows by name, items still processing
included. With filters it scrolls the whole index under them, so it filters exactly as
search does (the same `fq` parser, the same engine filter, fuzzy text), however large the
catalog; such pages follow the index's cursor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import InvalidRequest, NotFound
from magpie.common.filters import AnyOf, Filter
from magpie.gateway.controlplane import schema as schema_uc
from magpie.gateway.dashboard.session import AppPage
from magpie.gateway.dashboard.web import DashboardRoute, render
from magpie.image_fetch.thumbnails import load_thumbnail
from magpie.ingestion.tables import CatalogItem
from magpie.search import query
from magpie.search.fq import parse_filters
from magpie.search.handlers import SYSTEM_KEY

router = APIRouter(route_class=DashboardRoute)
PAGE_SIZE = 24
# With filters, a name search narrows the index scroll to the items it names: this many.
MAX_NAMED = 1000
# Filtered pages carry the cursors of the pages before them (`trail`), so Previous needs no
# backward scroll: cursors joined by TRAIL_SEP, FIRST standing for the first page.
TRAIL_SEP, FIRST = ".", "0"


@dataclass
class Item:
    """One catalog item as the browser shows it."""

    im_name: str
    indexed: bool
    im_url: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Listing:
    """One page of the catalog browser: its items, how many match, the next page's cursor."""

    items: list[Item]
    total: int
    after: str | None = None  # filtered views page by the index's scroll cursor


def item_of(im_name: str, payload: dict[str, Any] | None, indexed: bool = True) -> Item:
    """An item from its index payload (metadata plus the system keys)."""
    if payload is None:
        return Item(im_name, indexed)
    values = dict(payload)
    system = values.pop(SYSTEM_KEY, {}) or {}
    values.pop("im_name", None)
    return Item(im_name, indexed, system.get("im_url"), values)


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


async def listing(ctx: Any, q: str, state: str, page: int) -> Listing:
    """Unfiltered: the catalog's rows by name (items still processing included)."""
    app_id, index = ctx.app.app_id, ctx.container.index
    rows, total = await _names(ctx.db, app_id, q, state, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    points = [await index.get(app_id, n) if ok else None for n, ok in rows]
    return Listing([item_of(n, p.payload if p else None, ok) for (n, ok), p in zip(rows, points)],
                   total)


async def filtered(ctx: Any, q: str, filters: Filter, after: str | None) -> Listing:
    """Filtered: the whole index scrolled under the filters (as search applies them, text
    fuzzy included), a page at a time; a name search first narrows it to the names it finds."""
    app_id, index = ctx.app.app_id, ctx.container.index
    flt = await query.fuzzy(ctx.container.search, app_id, filters)
    if q:
        rows, found = await _names(ctx.db, app_id, q, "indexed", 0, MAX_NAMED)
        if found > MAX_NAMED:
            raise CatalogError("q", f"{found} names contain '{q}': with filters, narrow the name "
                                    f"to at most {MAX_NAMED} items.")
        if not rows:
            return Listing([], 0)
        flt = (*flt, AnyOf("im_name", tuple(n for n, _ in rows)))
    try:
        page = await index.scroll(app_id, limit=PAGE_SIZE, offset=after, filter=flt)
    except InvalidRequest:  # only the cursor can be wrong here: the filters were parsed
        raise CatalogError("page", "This page's cursor is not valid: start again from the "
                                   "first page.") from None
    total = await index.count(app_id, flt)
    return Listing([item_of(p.im_name, p.payload) for p in page.points], total, page.next_offset)


class CatalogError(InvalidRequest):
    """A catalog query that cannot run, shown next to its field."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.field = name


@router.get("/apps/{app_id}/catalog")
async def catalog(request: Request, ctx: AppPage, q: str = Query("", max_length=128), state: str = "",
                  fq: list[str] = Query(default_factory=list),
                  page: int = Query(1, ge=1, le=100_000),
                  after: str = Query("", max_length=64),
                  trail: str = Query("", max_length=8000)) -> Response:
    """The catalog, filterable by name, state and searchable fields (the `fq` syntax of search)."""
    assert ctx.app is not None
    current = await schema_uc.get_schema(ctx.db, ctx.member.account_id, ctx.app.app_id)
    fields = [Field(f.name, f.type, f.searchable) for f in current.fields]
    errors: dict[str, str] = {}
    fqs = [line.strip() for f in fq for line in f.splitlines() if line.strip()]  # one per textarea line
    shown = Listing([], 0)
    try:
        filters = parse_filters(fqs, fields)
        if filters and state == "pending":
            raise CatalogError("state", "Filters look at indexed items: choose all or indexed.")
        shown = (await filtered(ctx, q, filters, after or None) if filters
                 else await listing(ctx, q, state, page))
    except CatalogError as err:
        errors[err.field] = err.detail
    except InvalidRequest as err:  # the fq parser's message
        errors["fq"] = err.detail
    back = trail.split(TRAIL_SEP) if trail else []  # the cursors of the pages before this one
    return render(request, "catalog.html", ctx, items=shown.items, total=shown.total,
                  after=shown.after, filtered=bool(fqs), page=page,
                  next_trail=TRAIL_SEP.join([*back, after or FIRST]),
                  prev_after="" if not back or back[-1] == FIRST else back[-1],
                  prev_trail=TRAIL_SEP.join(back[:-1]),
                  pages=max(1, -(-shown.total // PAGE_SIZE)), errors=errors,
                  values={"q": q, "state": state, "fq": "\n".join(fqs)},
                  searchable=[f for f in current.fields if f.searchable],
                  shown=[f.name for f in current.fields if f.type != "text"], status=400 if errors else 200)


@router.get("/apps/{app_id}/thumbnail")
async def thumbnail(ctx: AppPage, im_name: str = Query(..., min_length=1, max_length=128)) -> Response:
    """An item's thumbnail, only for members of the account that owns the application."""
    assert ctx.app is not None
    try:
        data = await load_thumbnail(ctx.container.objects, ctx.app.app_id, im_name)
    except NotFound:
        return Response(status_code=404)
    # Private: thumbnails are the merchant's data; short-lived so a re-fetched image shows soon.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
