"""The search use cases on a real EdgeIndex, loaded by the real index-side handler with real
EfficientNet embeddings of generated pictures and their metadata."""
from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import ImageIdNotFound, ImageNotFound, InvalidRequest, MissingQueryImage, NoImages
from magpie.common.events.control import FieldSpec
from magpie.common.events.ingest import ItemEmbedded, ItemOp
from magpie.common.ports.index import IndexPoint
from magpie.common.storage.local import LocalObjectStore
from magpie.embedding.handlers import ModelHandle
from magpie.embedding.models.efficientnet import load_efficientnet
from magpie.image_fetch.colors import dominant_colors
from magpie.image_fetch.fetcher import ImageFetcher
from magpie.image_fetch.images import decode_and_normalise, open_stored
from magpie.search import query
from magpie.search.handlers import IndexDeps, on_item_embedded
from magpie.search.index.edge import EdgeIndex
from magpie.search.params import parse_params
from magpie.search.rerank import NEAR_DUPLICATE
from tests.fixtures.catalog import catalog, serve_files

# One index for the module (it is only read, apart from a separate application for paging).
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
APP, EMPTY, BIG = "shop", "empty", "big"
FIELDS = (Field("brand", "string", True), Field("price", "float", True), Field("stock", "int", True),
          Field("title", "text", True), Field("sku", "string", False))


class Schemas:
    async def get(self, app_id: str) -> AppSchema:
        return AppSchema(app_id, 1, FIELDS)


class Bus:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.published.append(event)


class Models:
    def __init__(self, embedder: Any) -> None:
        async def embed(image: Any) -> np.ndarray:
            return (await asyncio.to_thread(self.embedder.embed, [image]))[0]

        self.embedder, self.calls = embedder, 0
        self.handle = ModelHandle(embedder.name, embedder.version, embed)

    async def for_app(self, app_id: str, image_type: str) -> ModelHandle:
        self.calls += 1
        return self.handle


@pytest.fixture(scope="module")
def embedder(model_cache: Path) -> Any:
    return load_efficientnet(model_cache)


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return catalog()


@pytest.fixture(scope="module")
def events(embedder: Any, items: list[dict]) -> list[ItemEmbedded]:
    """What the embedding stage would publish for each catalog item (embedded, as there,
    from the stored copy)."""
    images = [open_stored(decode_and_normalise(it["image"]).stored) for it in items]
    vectors = embedder.embed(images)
    return [ItemEmbedded(app_id=APP, trans_id=1, im_name=it["im_name"], op=ItemOp.UPSERT,
                         fields={k: it[k] for k in ("brand", "price", "stock", "title", "sku")},
                         im_url=f"http://img/{it['im_name']}.png", vector=v.tolist(), model="m",
                         model_version="1", colors=dominant_colors(im))
            for it, im, v in zip(items, images, vectors)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deps(tmp_path_factory: pytest.TempPathFactory, events: list[ItemEmbedded],
               embedder: Any) -> AsyncIterator[query.SearchDeps]:
    tmp_path = tmp_path_factory.mktemp("search")
    index, objects = EdgeIndex(tmp_path / "index"), LocalObjectStore(tmp_path / "objects")
    fetcher = ImageFetcher(allow_private=True, retries=0)
    for adapter in (index, objects, fetcher):
        await adapter.start()
    index_deps = IndexDeps(index=index, schemas=Schemas(), bus=Bus())  # type: ignore[arg-type]
    for event in events:
        await on_item_embedded(event, index_deps)
    assert all(s.ok for s in index_deps.bus.published)  # type: ignore[attr-defined]
    await index.ensure_collection(EMPTY, 1280, [])
    yield query.SearchDeps(index=index, schemas=Schemas(), models=Models(embedder),  # type: ignore[arg-type]
                           fetcher=fetcher, objects=objects)
    await fetcher.stop()
    await index.stop()


def P(**kw: Any) -> Any:
    return parse_params([(k, v) for k, vs in kw.items() for v in (vs if isinstance(vs, list) else [vs])])


def names(outcome: Any) -> list[str]:
    return [h.im_name for h in outcome.hits]


def by_name(items: list[dict]) -> dict[str, dict]:
    return {it["im_name"]: it for it in items}


@pytest.mark.parametrize(("fq", "holds"), [
    (["brand:Nike"], lambda it: it["brand"] == "Nike"),  # exact and case-sensitive: not "nike"
    (["brand:Nike OR Adidas"], lambda it: it["brand"] in ("Nike", "Adidas")),
    (['brand:"Women\'s shoes"'], lambda it: it["brand"] == "Women's shoes"),
    (["stock:3"], lambda it: it["stock"] == 3),
    (["stock:1,2"], lambda it: 1 <= it["stock"] <= 2),
    (["price:10,20"], lambda it: 10.0 <= it["price"] <= 20.0),
    (["price:10.0"], lambda it: it["price"] == 10.0),
    (["price:,10"], lambda it: it["price"] <= 10.0),
    (["title:leather"], lambda it: "leather" in it["title"]),
    (["title:WOOL cap"], lambda it: "wool" in it["title"] or "cap" in it["title"]),
    (["brand:Nike OR nike", "price:10,20"], lambda it: it["brand"].lower() == "nike" and 10 <= it["price"] <= 20),
    # Text is fuzzy: a word matches indexed words an edit or two away (by its length).
    (["title:Lether"], lambda it: "leather" in it["title"]),
    (["title:jakcet"], lambda it: "jacket" in it["title"]),
    (["title:runing shoez"], lambda it: "running" in it["title"]),
    (["title:lthr"], lambda it: False),  # three edits from leather: too far
    (["title:cp"], lambda it: False),  # two letters tolerate no edit
])
async def test_each_filter_type(deps: query.SearchDeps, items: list[dict], fq: list[str], holds: Any) -> None:
    want = {it["im_name"] for it in items if holds(it)} - {"s2"}
    outcome = await query.find_similar(deps, APP, P(im_name="s2", fq=fq, limit="100"))
    assert set(names(outcome)) == want and outcome.total == len(want)


async def test_range_bounds_are_inclusive(deps: query.SearchDeps, items: list[dict]) -> None:
    outcome = await query.find_similar(deps, APP, P(im_name="s5", fq="price:10,20", limit="100", fl="price"))
    prices = {float(h.payload["price"]) for h in outcome.hits}
    assert {10.0, 20.0} <= prices


@pytest.mark.parametrize(("fq", "message"), [
    ("colour:red", "fq 'colour:red': colour is not a field"),
    ("sku:SKU-1", "fq 'sku:SKU-1': sku is not searchable"),
    ("price:1,x", "'x' is not a number"),
    ('brand:"Nike', "double quote is not closed"),
])
async def test_bad_filters_are_named(deps: query.SearchDeps, fq: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await query.find_similar(deps, APP, P(im_name="s2", fq=fq))


async def test_find_similar_ranks_the_near_duplicate_first_never_itself(deps: query.SearchDeps,
                                                                        items: list[dict]) -> None:
    outcome = await query.find_similar(deps, APP, P(im_name="s0", score="true", qinfo="true", fl=["brand", "title"]))
    assert names(outcome)[0] == "s0-copy" and "s0" not in names(outcome)
    assert outcome.hits[0].score >= NEAR_DUPLICATE
    assert [h.score for h in outcome.hits] == sorted((h.score for h in outcome.hits), reverse=True)
    assert outcome.qinfo == {"im_url": "http://img/s0.png", "brand": "Nike"}  # never the text field
    assert outcome.total == len(items) - 1 and outcome.fields == ["brand"]


async def test_score_bounds_and_dedup(deps: query.SearchDeps) -> None:
    everything = await query.find_similar(deps, APP, P(im_name="s4", limit="100"))
    scores = {h.im_name: h.score for h in everything.hits}
    low, high = sorted(scores.values())[5], sorted(scores.values())[-5]
    cut = await query.find_similar(deps, APP, P(im_name="s4", limit="100", score_min=str(low), score_max=str(high)))
    assert set(names(cut)) == {n for n, s in scores.items() if low <= s <= high}
    assert cut.total == len(cut.hits)
    # s1 and its byte-identical twin score alike against any query: dedup keeps one.
    assert {"s1", "s1-twin"} <= set(scores)
    deduped = await query.find_similar(deps, APP, P(im_name="s4", limit="100", dedup="true"))
    assert len({"s1", "s1-twin"} & set(names(deduped))) == 1 and deduped.total == everything.total - 1


async def test_paging_reaches_the_1000_result_limit(deps: query.SearchDeps) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1100, 1280)).astype(np.float32)
    await deps.index.ensure_collection(BIG, 1280, [FieldSpec(name="brand", type="string", searchable=True)])
    await deps.index.upsert(BIG, [IndexPoint(f"b{i}", v.tolist(), {"brand": "x"}) for i, v in enumerate(vectors)])
    pages = [await query.find_similar(deps, BIG, P(im_name="b0", page=str(p), limit="100")) for p in range(1, 11)]
    assert all(p.total == 1000 for p in pages)
    seen = [n for p in pages for n in names(p)]
    assert len(seen) == len(set(seen)) == 1000 and "b0" not in seen
    whole = await query.find_similar(deps, BIG, P(im_name="b0", limit="1000"))
    assert set(names(whole)) == set(seen)  # equal scores may swap places between requests
    scores = [h.score for p in pages for h in p.hits]
    assert scores == sorted(scores, reverse=True) and [h.score for h in whole.hits] == scores
    with pytest.raises(InvalidRequest, match="page\\*limit"):
        P(page="11", limit="100")


async def test_facets_count_strings_and_span_numbers(deps: query.SearchDeps, items: list[dict]) -> None:
    outcome = await query.find_similar(deps, APP, P(im_name="s2", facets="brand,price,stock", fq="price:5,50"))
    facets = {f.key: f for f in outcome.facets}
    kept = [it for it in items if 5 <= it["price"] <= 50]  # the query item is in the catalog
    counts = {}
    for it in kept:
        counts[it["brand"]] = counts.get(it["brand"], 0) + 1
    assert [(c.value, c.count) for c in facets["brand"].items] == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert facets["price"].range == (min(it["price"] for it in kept), max(it["price"] for it in kept))
    assert facets["stock"].range == (0, 4)
    limited = await query.find_similar(deps, APP, P(im_name="s2", facets="*", facets_limit="2"))
    assert [f.key for f in limited.facets] == ["brand", "price", "stock"] and len(limited.facets[0].items) == 2


async def test_recommendations_drop_near_duplicates_and_diversify(deps: query.SearchDeps) -> None:
    similar = await query.find_similar(deps, APP, P(im_name="s0", limit="20"))
    recs = await query.recommend(deps, APP, P(im_name="s0", limit="20"))
    assert "s0-copy" in names(similar) and "s0-copy" not in names(recs) and "s0" not in names(recs)
    assert len({"s1", "s1-twin"} & set(names(recs))) <= 1  # a pick's duplicate goes too
    assert names(recs)[0] == names(similar)[1]  # the best non-duplicate leads
    page2 = await query.recommend(deps, APP, P(im_name="s0", limit="5", page="2"))
    assert names(page2) == names(recs)[5:10] and recs.total == page2.total


async def test_color_search_ranks_by_dominant_colour(deps: query.SearchDeps, items: list[dict]) -> None:
    for hex_color, first in (("dc141e", "swatch-red"), ("1428d2", "swatch-blue"), ("22b428", "swatch-green")):
        outcome = await query.color_search(deps, APP, P(color=hex_color, score="true"))
        assert names(outcome)[0] == first and outcome.total == len(items)
    only = await query.color_search(deps, APP, P(color="dc141e", fq="brand:Nike"))
    assert "swatch-red" not in names(only) and only.total == 7  # filters hold as everywhere


async def test_upload_search_by_bytes_box_im_id_and_url(deps: query.SearchDeps, items: list[dict]) -> None:
    data = by_name(items)["s7"]["image"]
    first = await query.upload_search(deps, APP, P(limit="5"), data)
    assert names(first)[0] == "s7" and first.im_id and first.hits[0].score > 0.99
    calls = deps.models.calls  # type: ignore[attr-defined]
    again = await query.upload_search(deps, APP, P(limit="5", page="2", im_id=first.im_id), None)
    whole = await query.upload_search(deps, APP, P(limit="10", im_id=first.im_id), data)  # im_id wins
    assert names(whole) == names(first) + names(again) and whole.im_id == first.im_id
    assert deps.models.calls == calls + 2  # type: ignore[attr-defined]
    boxed = await query.upload_search(deps, APP, P(im_id=first.im_id, box="0,0,112,96"), None)
    assert boxed.hits[0].score < 0.99  # a region is another query
    ignored = await query.upload_search(deps, APP, P(im_id=first.im_id, box="9,9,9,9"), None)
    assert names(ignored)[:5] == names(first)
    with serve_files({"s9.png": by_name(items)["s9"]["image"]}) as base:
        by_url = await query.upload_search(deps, APP, P(im_url=f"{base}/s9.png"), None)
    assert names(by_url)[0] == "s9"


async def test_missing_things_have_their_codes(deps: query.SearchDeps) -> None:
    with pytest.raises(ImageNotFound):
        await query.find_similar(deps, APP, P(im_name="nope"))
    with pytest.raises(NoImages):
        await query.find_similar(deps, EMPTY, P(im_name="nope"))
    with pytest.raises(NoImages):
        await query.color_search(deps, EMPTY, P(color="ff0000"))
    with pytest.raises(MissingQueryImage):
        await query.upload_search(deps, APP, P(), None)
    with pytest.raises(ImageIdNotFound):
        await query.upload_search(deps, APP, P(im_id="20200101" + "0" * 32 + ".jpg"), None)
    with pytest.raises(InvalidRequest, match="im_name is invalid"):
        await query.recommend(deps, APP, P())


async def test_sort_by_orders_every_page_of_the_filtered_results(deps: query.SearchDeps,
                                                                 items: list[dict]) -> None:
    want = sorted((it["price"] for it in items if it["im_name"] != "s2" and it["price"] <= 50),
                  reverse=True)
    pages = [await query.find_similar(deps, APP, P(im_name="s2", fq="price:,50", sort_by="price:desc",
                                                   limit="7", page=str(p))) for p in (1, 2, 3, 4, 5)]
    assert all(p.total == len(want) for p in pages)
    assert [h.payload["price"] for p in pages for h in p.hits] == want
    # Equal prices keep their similarity order.
    ranked = await query.find_similar(deps, APP, P(im_name="s2", fq="price:,50", limit="100"))
    tens = [h.im_name for p in pages for h in p.hits if h.payload["price"] == 10.0]
    assert tens == [h.im_name for h in ranked.hits if h.payload["price"] == 10.0]


async def test_group_by_pages_over_groups_ordered_by_their_best_result(deps: query.SearchDeps) -> None:
    ranked = await query.find_similar(deps, APP, P(im_name="s2", limit="100"))
    order = list(dict.fromkeys(h.payload["brand"] for h in ranked.hits))
    grouped = await query.find_similar(deps, APP, P(im_name="s2", group_by="brand", group_limit="2",
                                                    limit="2", page="2"))
    assert grouped.total == len(order) and grouped.groups is not None
    key, groups = grouped.groups
    assert key == "brand" and [g.value for g in groups] == order[2:4]
    for g in groups:
        want = [h.im_name for h in ranked.hits if h.payload["brand"] == g.value][:2]
        assert [h.im_name for h in g.hits] == want
    assert names(grouped) == [h.im_name for g in groups for h in g.hits]
    # Colour search groups too (its collection carries the same payload).
    by_colour = await query.color_search(deps, APP, P(color="dc141e", group_by="brand", limit="1"))
    assert by_colour.groups is not None and by_colour.groups[1][0].hits[0].im_name == "swatch-red"


async def test_recommendation_refuses_to_sort_or_group(deps: query.SearchDeps) -> None:
    with pytest.raises(InvalidRequest, match="not supported by recommendation"):
        await query.recommend(deps, APP, P(im_name="s2", sort_by="price:asc"))


async def test_a_photo_of_an_item_on_clutter_is_searched_in_views(deps: query.SearchDeps,
                                                                   items: list[dict]) -> None:
    # The item small in a corner of a busy picture: the whole frame is mostly clutter.
    rng = np.random.default_rng(3)
    canvas = Image.fromarray(rng.integers(0, 256, (480, 560, 3), dtype=np.uint8))
    product = Image.open(io.BytesIO(by_name(items)["s5"]["image"])).convert("RGB")
    canvas.paste(product.resize((product.width * 3 // 5, product.height * 3 // 5)), (16, 20))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=85)
    params = P(limit="5", score="true")
    schema = await deps.schema(APP)
    vectors, _ = await query.query_vector(deps, APP, schema, params, out.getvalue())
    assert len(vectors) == 10  # the whole picture and 9 crops
    whole = await query.ranked_page(deps.index, APP, vectors[0].tolist(), params, ())
    found = await query.upload_search(deps, APP, params, out.getvalue())
    assert names(found)[0] == "s5"
    whole_score = next((h.score for h in whole.hits if h.im_name == "s5"), 0.0)
    assert found.hits[0].score > whole_score + 0.02  # a crop saw the item better
    one_view = dataclasses.replace(deps, views=False)  # MAGPIE_UPLOAD_SEARCH_VIEWS=false
    vectors, _ = await query.query_vector(one_view, APP, schema, params, out.getvalue())
    assert len(vectors) == 1
