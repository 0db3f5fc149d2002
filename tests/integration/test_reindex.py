"""Re-embedding an application's index after a model change (magpie.embedding.reindex).

A tiny catalog goes through the real pipeline stages (ingestion, image-fetch with a fake
download, embedding, search) on SQLite, the local object store and qdrant-edge, with one
model; the index is then closed, as with the server stopped, and reindexed with another.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from magpie.common.bus.inprocess import InProcessBus
from magpie.common.controlplane.schema_provider import AppSchema, SchemaProvider
from magpie.common.ports.index import IndexPoint
from magpie.common.storage.local import LocalObjectStore
from magpie.embedding import bootstrap as embedding
from magpie.embedding.app_projection import (
    catalog_images,
    fit_app_projection,
    load_projection,
    projected,
    projection_key,
)
from magpie.embedding.batcher import EmbeddingBatcher
from magpie.embedding.handlers import EmbedDeps, ModelHandle, _open, vector_key
from magpie.embedding.projection import ProjectionError
from magpie.embedding.registry import ModelRegistry, ModelSpec
from magpie.embedding.reindex import ReindexAborted, ReindexDeps, model_id, rebuild_key, reindex
from magpie.gateway.api.schemas import FieldIn
from magpie.image_fetch import bootstrap as image_fetch
from magpie.image_fetch.fetcher import FetchResult
from magpie.image_fetch.handlers import FetchDeps
from magpie.ingestion import bootstrap as ingestion
from magpie.ingestion import service
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.store import IngestStore
from magpie.search import bootstrap as search
from magpie.search.handlers import SYSTEM_KEY, IndexDeps
from magpie.search.index import IM_NAME
from magpie.search.index.edge import EdgeIndex, _qe
from PIL import Image, ImageDraw
from tests.fixtures.control import control_plane, new_app

pytestmark = pytest.mark.integration
N = 12


class FakeEmbedder:
    """Deterministic unit vectors: an image's 8x8 thumbnail through a matrix seeded by name."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.version, self.dim = name, "fake-1", dim
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        self._matrix = rng.normal(size=(8 * 8 * 3, dim)).astype(np.float32)

    def embed(self, images) -> np.ndarray:  # noqa: ANN001
        pixels = np.stack([np.asarray(im.convert("RGB").resize((8, 8)), np.float32).ravel()
                           for im in images]) / 255 - 0.5
        vectors = pixels @ self._matrix
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fake_loader(spec: ModelSpec) -> FakeEmbedder:
    """`st:<name>-<dim>` builds a FakeEmbedder: the registry path, without a real model."""
    name, dim = spec.target.rsplit("-", 1)
    return FakeEmbedder(name, int(dim))


class ScrollingEdgeIndex(EdgeIndex):
    """EdgeIndex plus the `scroll` that reindex uses when an index has one (proposed for
    EdgeIndex and the VectorIndex port; without it, reindex lists the catalog instead)."""

    async def scroll(self, app_id: str, *, offset: object = None,
                     limit: int = 256) -> tuple[list[IndexPoint], object]:
        app = await self._get(app_id)
        async with self._reading(app) as shard:
            if shard is None:
                return [], None
            records, next_offset = await asyncio.to_thread(shard.scroll, _qe().ScrollRequest(
                offset=offset, limit=limit, with_payload=True, with_vector=False))
        return [IndexPoint(r.payload[IM_NAME], [], dict(r.payload)) for r in records], next_offset


class FakeFetcher:
    """The HTTP side of image-fetch: answers every URL with its picture."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images

    async def fetch(self, url: str, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        return FetchResult("ok", self.images[url], None, None, url)


def picture(i: int) -> bytes:
    """A distinct 160x120 JPEG per `i`: a coloured shape on a gradient."""
    rng = np.random.default_rng(i)
    ramp = np.linspace(0, 1, 160)[None, :, None]
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    image = Image.fromarray((c0 * (1 - ramp) + c1 * ramp).repeat(120, 0).astype(np.uint8))
    x, y = int(rng.integers(0, 100)), int(rng.integers(0, 60))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    ImageDraw.Draw(image).ellipse([x, y, x + 50, y + 50], fill=colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@contextlib.asynccontextmanager
async def handle(embedder) -> AsyncIterator[ModelHandle]:  # noqa: ANN001
    """The embedder behind a batcher, as the embedding service serves it."""
    async with EmbeddingBatcher(embedder, max_batch=8, max_wait_s=0.005) as batcher:
        yield ModelHandle(embedder.name, embedder.version, batcher.embed)


@dataclass
class Catalog:
    """An application indexed with one model, its engines closed (the server stopped)."""

    data: Path
    db: object
    app_id: str
    schema: AppSchema
    names: list[str]

    def objects(self) -> LocalObjectStore:
        return LocalObjectStore(self.data / "objects")

    def catalog_names(self):  # noqa: ANN201
        return lambda: IngestStore(self.db).catalog_names(self.app_id)


async def ingest(data: Path, db, app_id: str, embedder, n: int = N) -> None:  # noqa: ANN001
    """Insert `n` items through the real stages (in-process bus) and wait until indexed."""
    store, schemas = IngestStore(db), SchemaProvider(db)
    objects, index = LocalObjectStore(data / "objects"), EdgeIndex(data / "index")
    bus = InProcessBus(workers=4, retry_backoff_s=0.01)
    urls = {f"http://shop.example/{i}.jpg": picture(i) for i in range(n)}
    await objects.start()
    await index.start()
    async with handle(embedder) as model:
        async def model_for(_image_type: str) -> ModelHandle:
            return model

        ingestion.subscribe(bus, store)
        image_fetch.subscribe(bus, FetchDeps(fetcher=FakeFetcher(urls), objects=objects, bus=bus))
        embedding.subscribe(bus, EmbedDeps(model_for=model_for, objects=objects,
                                           schemas=schemas, bus=bus))
        search.subscribe(bus, IndexDeps(index=index, schemas=schemas, bus=bus))
        await bus.start()
        result = await service.insert(IngestDeps(store=store, bus=bus, schemas=schemas), app_id, [
            (i, {"im_name": f"item-{i}", "im_url": f"http://shop.example/{i}.jpg",
                 "brand": f"brand-{i % 3}", "price": f"{i}.5"}) for i in range(n)])
        for _ in range(1000):
            status = await store.status(app_id, result.trans_id)
            if status.processed_percent == 100:
                break
            await asyncio.sleep(0.02)
        assert (status.success_count, status.fail_count) == (n, 0)
        await bus.stop()
    await index.stop()
    await objects.stop()


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    """N items indexed with the fake model `a` (16-d)."""
    engine, db = await control_plane(tmp_path / "control.sqlite3")
    app = await new_app(db, "Shop", [FieldIn(name="brand", type="string", searchable=True),
                                     FieldIn(name="price", type="float", searchable=True)])
    await ingest(tmp_path, db, app.app_id, FakeEmbedder("a", 16))
    app_schema = await SchemaProvider(db).get(app.app_id)
    yield Catalog(tmp_path, db, app.app_id, app_schema, [f"item-{i}" for i in range(N)])
    await engine.dispose()


async def points(index: EdgeIndex, c: Catalog) -> dict[str, IndexPoint]:
    found = {name: await index.get(c.app_id, name) for name in c.names}
    return {name: p for name, p in found.items() if p is not None}


async def run(c: Catalog, embedder, *, scrolling: bool = True, **kwargs):  # noqa: ANN001, ANN201
    """Reindex `c` with `embedder` on freshly opened engines, as the CLI does; the result and
    the points afterwards."""
    index = (ScrollingEdgeIndex if scrolling else EdgeIndex)(c.data / "index")
    objects = c.objects()
    await index.start()
    try:
        async with handle(embedder) as model:
            deps = ReindexDeps(index=index, objects=objects, model=model, schema=c.schema,
                               names=c.catalog_names())
            result = await reindex(c.app_id, deps, page=5, **kwargs)
        return result, await points(index, c)
    finally:
        await index.stop()


async def snapshot(c: Catalog) -> dict[str, IndexPoint]:
    index = EdgeIndex(c.data / "index")
    try:
        return await points(index, c)
    finally:
        await index.stop()


async def expected_vector(c: Catalog, embedder, point: IndexPoint) -> np.ndarray:  # noqa: ANN001
    """What the model makes of the point's stored image."""
    data = await c.objects().get(point.payload[SYSTEM_KEY]["image_key"])
    return embedder.embed([_open(data)])[0]


def without_model(payload: dict) -> dict:
    return {**payload, SYSTEM_KEY: {k: v for k, v in payload[SYSTEM_KEY].items() if k != "model"}}


@pytest.mark.parametrize("scrolling", [True, False], ids=["scroll", "catalog"])
async def test_same_dimension_rewrites_vectors_and_model_and_keeps_payloads(catalog, scrolling):
    before = await snapshot(catalog)
    assert {p.payload[SYSTEM_KEY]["model"] for p in before.values()} == {"a@fake-1"}
    b = FakeEmbedder("b", 16)
    result, after = await run(catalog, b, scrolling=scrolling)
    assert (result.total, result.embedded, result.skipped) == (N, N, 0)
    assert (result.failed, result.rebuilt) == ([], False)
    assert after.keys() == before.keys()
    for name, point in after.items():
        old = before[name]
        assert point.payload[SYSTEM_KEY]["model"] == model_id(ModelHandle("b", "fake-1", None))
        assert without_model(point.payload) == without_model(old.payload)
        assert (point.payload["brand"], point.payload["price"]) == (old.payload["brand"],
                                                                    old.payload["price"])
        assert not np.allclose(point.vector, old.vector, atol=1e-3)
        assert np.allclose(point.vector, await expected_vector(catalog, b, point), atol=1e-5)
    # The embedding stage's cache holds the new vectors: a re-insert would not re-embed.
    one = after["item-0"].payload[SYSTEM_KEY]
    b_handle = ModelHandle("b", "fake-1", None)
    assert await catalog.objects().exists(vector_key(catalog.app_id, b_handle, one["content_hash"]))


async def test_a_second_run_skips_everything_and_changes_nothing(catalog, tmp_path):
    b = ModelRegistry(tmp_path / "models", default_model="st:b-16", loader=fake_loader).get()
    _, first = await run(catalog, b)
    result, second = await run(catalog, b)
    assert (result.total, result.skipped, result.embedded, result.cached) == (N, N, 0, 0)
    for name, point in second.items():
        assert point.vector == first[name].vector and point.payload == first[name].payload
    forced, _ = await run(catalog, b, force=True)  # force redoes them, from the vector cache
    assert (forced.skipped, forced.cached, forced.embedded) == (0, N, 0)


async def test_a_new_dimension_rebuilds_the_collection_with_every_payload(catalog):
    before = await snapshot(catalog)
    c8 = FakeEmbedder("c", 8)
    result, after = await run(catalog, c8)
    assert (result.total, result.embedded, result.failed, result.rebuilt) == (N, N, [], True)
    assert after.keys() == before.keys()
    for name, point in after.items():
        assert len(point.vector) == 8 and point.payload[SYSTEM_KEY]["model"] == "c@fake-1"
        assert without_model(point.payload) == without_model(before[name].payload)
        assert np.allclose(point.vector, await expected_vector(catalog, c8, point), atol=1e-5)
    assert not await catalog.objects().exists(rebuild_key(catalog.app_id))
    # The payload indexes were rebuilt too: filters work on the new collection.
    index = EdgeIndex(catalog.data / "index")
    try:
        from magpie.common.filters import AnyOf

        assert await index.count(catalog.app_id, (AnyOf("brand", ("brand-1",)),)) == N // 3
        hits = await index.search(catalog.app_id, after["item-4"].vector, limit=1)
        assert hits[0].im_name == "item-4"
    finally:
        await index.stop()


async def test_an_interrupted_rebuild_is_finished_by_the_next_run(catalog, monkeypatch):
    before = await snapshot(catalog)
    calls = 0
    real_upsert = EdgeIndex.upsert

    async def failing_upsert(self, app_id, pts):  # noqa: ANN001
        nonlocal calls
        calls += 1
        if calls == 2:  # the first page is in; the process "dies" on the second
            raise RuntimeError("power cut")
        await real_upsert(self, app_id, pts)

    monkeypatch.setattr(EdgeIndex, "upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="power cut"):
        await run(catalog, FakeEmbedder("c", 8))
    monkeypatch.setattr(EdgeIndex, "upsert", real_upsert)
    assert await catalog.objects().exists(rebuild_key(catalog.app_id))
    assert len(await snapshot(catalog)) < N  # half rebuilt: the save is the only full list
    result, after = await run(catalog, FakeEmbedder("c", 8))
    assert result.rebuilt and result.total == N and result.cached == N  # vectors cached before
    assert after.keys() == before.keys()
    for name, point in after.items():
        assert without_model(point.payload) == without_model(before[name].payload)


async def test_a_missing_image_is_reported_and_the_rest_reindexed(catalog):
    before = await snapshot(catalog)
    await catalog.objects().delete(before["item-3"].payload[SYSTEM_KEY]["image_key"])
    result, after = await run(catalog, FakeEmbedder("b", 16))
    assert [name for name, _ in result.failed] == ["item-3"] and result.embedded == N - 1
    assert "missing" in result.failed[0][1]
    assert after["item-3"].payload[SYSTEM_KEY]["model"] == "a@fake-1"  # left as it was
    assert after["item-3"].vector == before["item-3"].vector


async def test_a_new_dimension_with_a_missing_image_leaves_the_index_alone(catalog):
    before = await snapshot(catalog)
    await catalog.objects().delete(before["item-5"].payload[SYSTEM_KEY]["image_key"])
    with pytest.raises(ReindexAborted, match="item-5"):
        await run(catalog, FakeEmbedder("c", 8))
    after = await snapshot(catalog)
    assert {n: (p.vector, p.payload) for n, p in after.items()} == {
        n: (p.vector, p.payload) for n, p in before.items()}
    assert not await catalog.objects().exists(rebuild_key(catalog.app_id))


async def test_the_registry_default_model_reindexes_a_fake_model_catalog(catalog, model_cache):
    registry = ModelRegistry(model_cache)  # efficientnet-lite0 via ONNX, as the server loads it
    real = await registry.get_async("general")
    before = await snapshot(catalog)
    result, after = await run(catalog, real)
    assert result.rebuilt and result.total == N and not result.failed  # 16-d -> 1280-d
    for name, point in after.items():
        assert point.payload[SYSTEM_KEY]["model"] == f"efficientnet-lite0@{real.version}"
        assert without_model(point.payload) == without_model(before[name].payload)
        assert np.allclose(point.vector, await expected_vector(catalog, real, point), atol=1e-4)


async def test_a_resumed_rebuild_reports_items_it_can_no_longer_embed(catalog):
    before = await snapshot(catalog)
    saved = [[name, point.payload] for name, point in before.items()]
    await catalog.objects().put(rebuild_key(catalog.app_id), json.dumps(saved).encode())
    await catalog.objects().delete(before["item-7"].payload[SYSTEM_KEY]["image_key"])
    result, after = await run(catalog, FakeEmbedder("c", 8))
    assert result.rebuilt and [name for name, _ in result.failed] == ["item-7"]
    assert set(after) == set(before) - {"item-7"}  # the only way forward: reported, left out
    assert not await catalog.objects().exists(rebuild_key(catalog.app_id))


# ---------------------------------------------------------------- catalog projection


async def test_a_projection_fitted_on_the_stored_catalog_is_stored_and_reindexed_in(catalog):
    """Fit from the application's stored images, store, then reindex through the projected
    handle: a new model id and dimension (rebuild), every vector the projected raw vector."""
    raw = FakeEmbedder("a", 16)  # the model the catalog was indexed with
    index, objects = ScrollingEdgeIndex(catalog.data / "index"), catalog.objects()
    await index.start()
    try:
        async with handle(raw) as model:
            deps = ReindexDeps(index=index, objects=objects, model=model, schema=catalog.schema)
            assert await load_projection(objects, catalog.app_id, model) is None
            images = await catalog_images(catalog.app_id, deps)
            assert len(images) == N
            fitted = await fit_app_projection(catalog.app_id, deps, raw.embed,
                                              views_per_image=2, dims=6, min_items=10)
            assert (fitted.dim, fitted.kind) == (6, "learned-whitening")
            stored = await load_projection(objects, catalog.app_id, model)
            assert stored is not None and stored.digest == fitted.digest
            assert await objects.exists(projection_key(catalog.app_id, model))
            view = projected(model, stored)
            assert view.version == f"fake-1+lw-{fitted.digest}"
            result = await reindex(catalog.app_id, ReindexDeps(
                index=index, objects=objects, model=view, schema=catalog.schema), page=5)
        after = await points(index, catalog)
    finally:
        await index.stop()
    assert result.rebuilt and result.total == N and not result.failed  # 16-d -> 6-d
    # Every raw vector was in the vector cache: projected, not embedded again, and cached
    # under the projected model for the next run.
    assert (result.cached, result.embedded) == (N, 0)
    for point in after.values():
        content_hash = point.payload[SYSTEM_KEY]["content_hash"]
        assert await objects.exists(vector_key(catalog.app_id, view, content_hash))
        assert point.payload[SYSTEM_KEY]["model"] == f"a@{view.version}"
        expected = fitted.apply(await expected_vector(catalog, raw, point))
        np.testing.assert_allclose(point.vector, expected, atol=1e-4)


async def test_a_catalog_too_small_is_not_fitted(catalog):
    index, objects = ScrollingEdgeIndex(catalog.data / "index"), catalog.objects()
    await index.start()
    try:
        async with handle(FakeEmbedder("a", 16)) as model:
            deps = ReindexDeps(index=index, objects=objects, model=model, schema=catalog.schema)
            with pytest.raises(ProjectionError, match="too small"):
                await fit_app_projection(catalog.app_id, deps, FakeEmbedder("a", 16).embed)
            assert await load_projection(objects, catalog.app_id, model) is None
    finally:
        await index.stop()
