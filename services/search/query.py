"""The search use cases: find similar, search by image, recommendations, colour search.

Each turns checked parameters into one page of a ranking. The ranking holds every item that
passes the filters (and the score bounds), best first, of which at most MAX_RESULTS can be
paged through; `total` is its size. Without score bounds or dedup a page is one engine query
plus a count; with them the whole window of MAX_RESULTS is ranked, cut, and then paged.
Facets describe the items that pass the filters (the whole filtered catalog, what a filter
panel offers), not only the page.
"""
from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from magpie.common.controlplane.schema_provider import AppSchema, SchemaProvider
from magpie.common.errors import (
    ImageNotFound,
    IndexModelMismatch,
    InvalidCredentials,
    InvalidRequest,
    MissingQueryImage,
    NoImages,
    NotFound,
)
from magpie.common.filters import Filter
from magpie.common.ports import ObjectStore, VectorIndex
from magpie.common.ports.index import Hit
from magpie.search import query_image
from magpie.search.cache import RefreshingCache
from magpie.search.arrange import Group, group_hits, sort_hits
from magpie.search.colors import color_collection, color_vector
from magpie.search.fq import parse_filters
from magpie.search.fuzzy import Vocabulary, expand_filter, text_fields
from magpie.search.params import MAX_RESULTS, SearchParams, Unsupported
from magpie.search.rerank import dedup_by_score, mmr, within_scores
from magpie.search.views import nearest, query_views
from magpie.search.response import Facet, Outcome, qinfo_of, returned_fields

UseCase = TypeVar("UseCase", bound=Callable[..., Awaitable[Outcome]])

ACCESS_TTL_S = 5.0  # a revoked key searches on for about this long
SCHEMA_TTL_S = 2.0  # a schema change reaches searches this long after (and one search later)
VECTOR_CACHE_SIZE = 512  # query vectors by im_id: paging needs no second embedding
RECOMMEND_POOL_MIN = 100  # candidates MMR chooses from, at least
SCORE_SLACK = 1e-5
TIE_SLACK = 8  # results fetched past a page's end so that ties across it are ordered
VOCABULARY_TTL_S = 30.0  # a new word is matched fuzzily this long after it is indexed
VOCABULARY_PAGE = 1000  # points per scroll page while a vocabulary is read


@dataclass
class SearchDeps:
    """What the query side needs; one per process."""

    index: VectorIndex
    schemas: SchemaProvider
    models: Any  # .for_app(app_id, image_type) -> ModelHandle with async embed(PIL image)
    fetcher: Any  # ImageFetcher: im_url downloads under the network policy
    objects: ObjectStore
    min_side: int = 32
    views: bool = True  # photos searched in several views (magpie.search.views)
    _schemas: RefreshingCache[AppSchema] = field(
        default_factory=lambda: RefreshingCache(SCHEMA_TTL_S, evict_on=(NotFound,)))
    _vectors: OrderedDict[tuple[Any, ...], np.ndarray] = field(default_factory=OrderedDict)
    # The gateway's key checks for search routes (magpie.gateway.api.search), per process.
    access: RefreshingCache[Any] = field(
        default_factory=lambda: RefreshingCache(ACCESS_TTL_S, evict_on=(InvalidCredentials,)))
    _vocabularies: RefreshingCache[Vocabulary] = field(
        default_factory=lambda: RefreshingCache(VOCABULARY_TTL_S, max_entries=1_000))

    async def schema(self, app_id: str) -> AppSchema:
        """The application's schema, re-read in the background every SCHEMA_TTL_S."""
        return await self._schemas.get(app_id, lambda: self.schemas.get(app_id))

    async def vocabulary(self, app_id: str, name: str) -> Vocabulary:
        """The words of a text field's indexed values, re-read in the background once stale."""
        return await self._vocabularies.get(
            (app_id, name), lambda: read_vocabulary(self.index, app_id, name))

    def cached_vector(self, key: tuple[Any, ...]) -> np.ndarray | None:
        """A query's vectors (views x dimensions) embedded before (LRU)."""
        vector = self._vectors.get(key)
        if vector is not None:
            self._vectors.move_to_end(key)
        return vector

    def cache_vector(self, key: tuple[Any, ...], vector: np.ndarray) -> None:
        """Remember a query's vectors, forgetting the least recently used."""
        self._vectors[key] = vector
        while len(self._vectors) > VECTOR_CACHE_SIZE:
            self._vectors.popitem(last=False)


@dataclass(frozen=True)
class Plan:
    """A request checked against the schema: its filter, value_map fields and facets."""

    filter: Filter
    fields: list[str]
    facets: list[tuple[str, str]]  # (field, type)


def plan(schema: AppSchema, params: SearchParams) -> Plan:
    """Check fq, facets, sort_by and group_by against the schema before any engine is asked."""
    check_arrangement(schema, params)
    return Plan(parse_filters(params.fq, schema.fields), returned_fields(schema, params),
                facet_fields(schema, params.facets))


def check_arrangement(schema: AppSchema, params: SearchParams) -> None:
    """sort_by and group_by name a field of the schema that is not text."""
    by_name = {f.name: f for f in schema.fields}
    for label, name in (("sort_by", params.sort_by.field if params.sort_by else ""),
                        ("group_by", params.group_by)):
        if not name:
            continue
        f = by_name.get(name)
        if f is None:
            raise InvalidRequest(f"{label}: {name} is not a field of the schema.")
        if f.type == "text":
            raise InvalidRequest(f"{label}: {name} is a text field; use a string, int or float "
                                 "field.")


async def read_vocabulary(index: VectorIndex, app_id: str, name: str) -> Vocabulary:
    """A field's vocabulary, read by scrolling its values out of the index."""
    values: list[Any] = []
    offset: str | None = None
    while True:
        page = await index.scroll(app_id, limit=VOCABULARY_PAGE, offset=offset, fields=[name])
        values += [p.payload.get(name) for p in page.points]
        if page.next_offset is None:
            return Vocabulary.of(values)
        offset = page.next_offset


async def fuzzy(deps: SearchDeps, app_id: str, flt: Filter) -> Filter:
    """`flt` with its text conditions widened to near words (see magpie.search.fuzzy)."""
    names = text_fields(flt)
    if not names:
        return flt
    vocabularies = {name: await deps.vocabulary(app_id, name) for name in names}
    return expand_filter(flt, vocabularies)


async def planned(deps: SearchDeps, app_id: str, schema: AppSchema, params: SearchParams) -> Plan:
    """`plan`, with fuzzy text conditions."""
    p = plan(schema, params)
    return Plan(await fuzzy(deps, app_id, p.filter), p.fields, p.facets)


def facet_fields(schema: AppSchema, names: Sequence[str]) -> list[tuple[str, str]]:
    """The facet fields: searchable and not text (`*` = every such field)."""
    usable = [(f.name, f.type) for f in schema.fields if f.searchable and f.type != "text"]
    if "*" in names:
        return usable
    by_name = {f.name: f for f in schema.fields}
    out = []
    for name in names:
        f = by_name.get(name)
        if f is None:
            raise InvalidRequest(f"facets: {name} is not a field of the schema.")
        if f.type == "text":
            raise InvalidRequest(f"facets: {name} is a text field; text fields have no facets.")
        if not f.searchable:
            raise InvalidRequest(
                f"facets: {name} is not searchable; mark it searchable in the schema.")
        out.append((f.name, f.type))
    return out


@dataclass(frozen=True)
class Ranked:
    """One page of a ranking and the ranking's size."""

    hits: list[Any]
    total: int
    groups: list[Group] | None = None  # with group_by: the page's groups (hits is their items)


def in_stable_order(hits: list[Hit]) -> list[Hit]:
    """Best first, equal scores by im_name: the same order on every call, so pages never
    overlap."""
    return sorted(hits, key=lambda h: (-h.score, h.im_name))


def engine_threshold(params: SearchParams) -> float | None:
    """The engine's cut for score_min, a hair low (the exact bound is applied afterwards)."""
    # So float rounding in the engine never loses a result that lies on the bound.
    return params.score_min - SCORE_SLACK if params.score_min > 0 else None


async def ranked_page(index: VectorIndex, collection: str, vector: Sequence[float],
                      params: SearchParams, flt: Filter, exclude: Sequence[str] = (),
                      views: Sequence[Sequence[float]] = ()) -> Ranked:
    """A page of the nearest items, under the filter and the score bounds; `views`, more
    vectors of the same query (an upload's crops: `magpie.search.views`), score each item by
    its best."""
    vectors = [vector, *views]
    if not params.scored_window and not params.arranged:
        # From the top, not by the engine's offset: the engine orders equal scores (copies of
        # one image) arbitrarily per call, so a tie on a page boundary would show one item on
        # two pages and skip another. A few more than the page settle ties across its end.
        want = params.offset + params.limit + TIE_SLACK
        ranked = in_stable_order(await nearest(index, collection, vectors, limit=want, filter=flt,
                                               exclude=exclude))
        hits = ranked[params.offset:params.offset + params.limit]
        if len(ranked) < want:
            return Ranked(hits, min(len(ranked), MAX_RESULTS))  # every result is here: no count
        return Ranked(hits, min(await index.count(collection, flt, exclude), MAX_RESULTS))
    window = in_stable_order(await nearest(
        index, collection, vectors, limit=MAX_RESULTS, filter=flt, exclude=exclude,
        score_threshold=engine_threshold(params)))
    window = within_scores(window, params.score_min, params.score_max)
    if params.dedup:
        window = dedup_by_score(window, params.dedup_score_threshold)
    if params.sort_by is not None:
        window = sort_hits(window, params.sort_by)
    if params.group_by:
        groups = group_hits(window, params.group_by, params.group_limit)
        page = groups[params.offset:params.offset + params.limit]
        return Ranked([h for g in page for h in g.hits], len(groups), page)
    return Ranked(window[params.offset:params.offset + params.limit], len(window))


async def facets(index: VectorIndex, collection: str, p: Plan,
                 params: SearchParams) -> list[Facet] | None:
    """Value counts (strings) or ranges (numbers) over the filtered catalog."""
    # The query item counts too: leaving one item out costs the engine a scan of every payload.
    if not p.facets:
        return None
    out = []
    for name, ftype in p.facets:
        if ftype == "string":
            counts = await index.facet(collection, name, limit=params.facets_limit,
                                       filter=p.filter)
            out.append(Facet(name, tuple(counts)))
        else:
            span = await index.value_range(collection, name, p.filter)
            if span is not None:
                out.append(Facet(name, range=span))
    return out


async def _check_not_empty(deps: SearchDeps, app_id: str) -> None:
    """1107 when the application has no item at all (asked only when nothing was found)."""
    if await deps.index.count(app_id) == 0:
        raise NoImages()


async def _outcome(deps: SearchDeps, app_id: str, collection: str, ranked: Ranked, p: Plan,
                   params: SearchParams, **extra: Any) -> Outcome:
    if ranked.total == 0:
        await _check_not_empty(deps, app_id)
    groups = None if ranked.groups is None else (params.group_by, ranked.groups)
    return Outcome(ranked.hits, ranked.total, p.fields,
                   await facets(deps.index, collection, p, params), groups=groups, **extra)


def across_rebuild(use_case: UseCase) -> UseCase:
    """The use case, run once more when the index changed dimension under it: an automatic
    projection's swap (`magpie.embedding.auto_projection`) between reading or embedding a
    vector and searching with it. A lasting mismatch (a model upgrade) still raises."""

    @functools.wraps(use_case)
    async def run(*args: Any, **kwargs: Any) -> Outcome:
        try:
            return await use_case(*args, **kwargs)
        except IndexModelMismatch:
            return await use_case(*args, **kwargs)

    return run  # type: ignore[return-value]


async def _query_item(deps: SearchDeps, app_id: str, params: SearchParams) -> Any:
    if not params.im_name:
        raise InvalidRequest("im_name is invalid.")
    item = await deps.index.get(app_id, params.im_name)
    if item is None:
        await _check_not_empty(deps, app_id)
        raise ImageNotFound()
    return item


@across_rebuild
async def find_similar(deps: SearchDeps, app_id: str, params: SearchParams) -> Outcome:
    """Items like the indexed item `im_name`, the item itself left out."""
    p = await planned(deps, app_id, await deps.schema(app_id), params)
    item = await _query_item(deps, app_id, params)
    exclude = [params.im_name]
    ranked = await ranked_page(deps.index, app_id, item.vector, params, p.filter, exclude)
    qinfo = qinfo_of(item.payload, p.fields) if params.qinfo else None
    return await _outcome(deps, app_id, app_id, ranked, p, params, qinfo=qinfo)


@across_rebuild
async def recommend(deps: SearchDeps, app_id: str, params: SearchParams) -> Outcome:
    """"You may also like": items like `im_name`, near-duplicates out, diversified by MMR."""
    if params.arranged:
        raise Unsupported("sort_by and group_by are not supported by recommendation: its "
                          "order is the diversified one; use /search to sort or group.")
    p = await planned(deps, app_id, await deps.schema(app_id), params)
    item = await _query_item(deps, app_id, params)
    exclude, needed = [params.im_name], params.page * params.limit
    pool = min(MAX_RESULTS, max(RECOMMEND_POOL_MIN, 4 * needed))
    # In stable order too: MMR breaks ties by position, so each call must see the same one.
    candidates = in_stable_order(await deps.index.search(
        app_id, item.vector, limit=pool, filter=p.filter, exclude=exclude, with_vectors=True,
        score_threshold=engine_threshold(params)))
    cut = within_scores(candidates, params.score_min, params.score_max)
    if params.dedup:
        cut = dedup_by_score(cut, params.dedup_score_threshold)
    diverse = await asyncio.to_thread(mmr, cut, needed)
    total = diverse.eligible
    if len(candidates) == pool and not params.scored_window:  # more beyond the pool
        rest = await deps.index.count(app_id, p.filter, exclude) - pool
        total += max(0, rest)
    ranked = Ranked(diverse.picked[params.offset:needed], min(total, MAX_RESULTS))
    for hit in ranked.hits:
        hit.vector = None  # not needed past MMR; keeps the response path light
    qinfo = qinfo_of(item.payload, p.fields) if params.qinfo else None
    return await _outcome(deps, app_id, app_id, ranked, p, params, qinfo=qinfo)


async def color_search(deps: SearchDeps, app_id: str, params: SearchParams) -> Outcome:
    """Items whose dominant colours (extracted at ingest) are closest to `color`."""
    p = await planned(deps, app_id, await deps.schema(app_id), params)
    vector = color_vector(params.colors)
    if vector is None:
        raise InvalidRequest("color is invalid.")
    collection = color_collection(app_id)
    ranked = await ranked_page(deps.index, collection, vector, params, p.filter)
    return await _outcome(deps, app_id, collection, ranked, p, params)


@across_rebuild
async def upload_search(deps: SearchDeps, app_id: str, params: SearchParams,
                        upload: bytes | None) -> Outcome:
    """Items like an upload, an `im_url` or an earlier upload's `im_id` (wins), or its `box`."""
    schema = await deps.schema(app_id)
    p = await planned(deps, app_id, schema, params)
    vectors, im_id = await query_vector(deps, app_id, schema, params, upload)
    ranked = await ranked_page(deps.index, app_id, vectors[0].tolist(), params, p.filter,
                               views=[v.tolist() for v in vectors[1:]])
    return await _outcome(deps, app_id, app_id, ranked, p, params, im_id=im_id)


async def query_vector(deps: SearchDeps, app_id: str, schema: AppSchema, params: SearchParams,
                       upload: bytes | None) -> tuple[np.ndarray, str]:
    """The embeddings of the query image's views (or its box's: `magpie.search.views`), the
    whole picture first, and the im_id that finds it again."""
    model = await deps.models.for_app(app_id, schema.image_type)
    box, save = params.box, True
    if params.im_id:
        im_id, save = params.im_id, False
        query_image.object_key(app_id, im_id)  # refuses a malformed or expired one first
        cached = deps.cached_vector((app_id, im_id, box, model.name, model.version))
        if cached is not None:
            return cached, im_id
        image = await query_image.load(deps.objects, app_id, im_id)
    elif upload is not None:
        image = await query_image.decode(upload, min_side=deps.min_side)
        im_id = query_image.new_im_id()
    elif params.im_url:
        image = await query_image.fetch(deps.fetcher, params.im_url, min_side=deps.min_side)
        im_id = query_image.new_im_id()
    else:
        raise MissingQueryImage()
    region = query_image.crop(image, box)
    shown = await asyncio.to_thread(query_views, region) if deps.views else [region]
    # One batch: the embedding batcher takes the views together.
    embed = asyncio.gather(*(model.embed(view) for view in shown))
    if save:
        saved = query_image.save(deps.objects, app_id, im_id, image)
        vectors, _ = await asyncio.gather(embed, saved)
    else:
        vectors = await embed
    stacked = np.asarray(vectors, dtype=np.float32)
    deps.cache_vector((app_id, im_id, box, model.name, model.version), stacked)
    return stacked, im_id
