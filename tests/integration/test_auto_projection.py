"""The automatic catalog projection (magpie.embedding.auto_projection) on real engines.

Items go through the real stages (ingestion, image-fetch with a fake download, embedding,
search) on SQLite, the local object store and qdrant-edge, with the process's `Models` serving
a fake model (16-d, the registry path) as the standalone server wires them; the task's `check`
is then called as its loop would call it.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from magpie.common.bus.inprocess import InProcessBus
from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.events.ingest import ItemEmbedded, ItemOp
from magpie.common.settings import Settings
from magpie.common.storage.local import LocalObjectStore
from magpie.embedding import auto_projection as auto
from magpie.embedding import bootstrap as embedding
from magpie.embedding.app_projection import load_projection, projection_key, save_projection
from magpie.embedding.handlers import EmbedDeps, _open, vector_key
from magpie.embedding.projection import Projection
from magpie.embedding.registry import ModelRegistry
from magpie.gateway.api.schemas import FieldIn
from magpie.image_fetch import bootstrap as image_fetch
from magpie.image_fetch.handlers import FetchDeps
from magpie.ingestion import bootstrap as ingestion
from magpie.ingestion import service
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.store import IngestStore
from magpie.search import bootstrap as search
from magpie.search.handlers import SYSTEM_KEY, IndexDeps, on_item_embedded
from magpie.search.index.edge import EdgeIndex
from tests.integration.test_reindex import FakeEmbedder, FakeFetcher, fake_loader, picture
from tests.fixtures.control import control_plane, new_app

pytestmark = pytest.mark.integration
N, DIMS = 60, 8


@dataclass
class Shop:
    """One application on running stages, as the standalone server wires them."""

    app_id: str
    db: object
    store: IngestStore
    schemas: SchemaProvider
    bus: InProcessBus
    objects: LocalObjectStore
    index: EdgeIndex
    models: embedding.Models
    urls: dict[str, bytes]

    def deps(self, **kw: object) -> auto.AutoProjectionDeps:
        options: dict = {"min_items": 50, "views": 2, "dims": DIMS, **kw}
        return auto.AutoProjectionDeps(index=self.index, objects=self.objects, models=self.models,
                                       schemas=self.schemas, app_ids=self.schemas.app_ids,
                                       **options)

    async def insert(self, first: int, n: int) -> None:
        for i in range(first, first + n):
            self.urls[f"http://shop.example/{i}.jpg"] = picture(i)
        ingest = IngestDeps(store=self.store, bus=self.bus, schemas=self.schemas)
        result = await service.insert(ingest, self.app_id, [
            (i - first, {"im_name": f"item-{i}", "im_url": f"http://shop.example/{i}.jpg",
                         "brand": f"brand-{i % 3}"}) for i in range(first, first + n)])
        for _ in range(1500):
            status = await self.store.status(self.app_id, result.trans_id)
            if status.processed_percent == 100:
                break
            await asyncio.sleep(0.02)
        assert (status.success_count, status.fail_count) == (n, 0), status.error_list

    async def point(self, i: int):  # noqa: ANN201
        found = await self.index.get(self.app_id, f"item-{i}")
        assert found is not None
        return found

    async def raw_vector(self, i: int) -> np.ndarray:
        point = await self.point(i)
        data = await self.objects.get(point.payload[SYSTEM_KEY]["image_key"])
        return FakeEmbedder("a", 16).embed([_open(data)])[0]


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    engine, db = await control_plane(tmp_path / "control.sqlite3")
    app = await new_app(db, "Shop", [FieldIn(name="brand", type="string", searchable=True)])
    objects, index = LocalObjectStore(tmp_path / "objects"), EdgeIndex(tmp_path / "index")
    models = embedding.Models(Settings(data_dir=tmp_path), objects=objects)
    models.registry = ModelRegistry(tmp_path / "models", default_model="st:a-16", loader=fake_loader)
    store, schemas = IngestStore(db), SchemaProvider(db)
    bus = InProcessBus(workers=4, retry_backoff_s=0.01)
    shop = Shop(app.app_id, db, store, schemas, bus, objects, index, models, {})
    ingestion.subscribe(bus, store)
    image_fetch.subscribe(bus, FetchDeps(fetcher=FakeFetcher(shop.urls), objects=objects, bus=bus))
    embedding.subscribe(bus, EmbedDeps(model_for=models.for_type, objects=objects, schemas=schemas,
                                       bus=bus, app_model=models.for_app))
    search.subscribe(bus, IndexDeps(index=index, schemas=schemas, bus=bus,
                                    reproject=models.reprojected))
    await objects.start()
    await index.start()
    await bus.start()
    await shop.insert(0, N)
    yield shop
    await bus.stop()
    await models.close()
    await index.stop()
    await objects.stop()
    await engine.dispose()


def test_due_waits_for_enough_items_at_rest_and_refits_when_grown() -> None:
    def fitted(items: int) -> Projection:
        return Projection(np.zeros(4, np.float32), np.eye(4, 2, dtype=np.float32), "lw", items)

    assert not auto.due(99, 99, None, 100, 2.0, 2000)  # too few
    assert not auto.due(150, 140, None, 100, 2.0, 2000)  # still growing
    assert not auto.due(150, None, None, 100, 2.0, 2000)  # first look: at rest is not known yet
    assert auto.due(150, 150, None, 100, 2.0, 2000)
    assert not auto.due(199, 199, fitted(100), 100, 2.0, 2000)  # fitted, not grown enough
    assert auto.due(200, 200, fitted(100), 100, 2.0, 2000)
    assert auto.due(8000, 8000, fitted(2000), 100, 2.0, 2000)
    # A fit for a catalog of twice the sample read a full sample: a refit would read no more.
    assert not auto.due(9000, 9000, fitted(4000), 100, 2.0, 2000)
    assert not auto.due(10_000, 10_000, fitted(0), 100, 2.0, 2000)  # by hand, size not recorded


async def test_a_catalog_at_rest_is_fitted_and_moved_over_online(shop: Shop) -> None:
    deps = shop.deps()
    assert await auto.check(shop.app_id, deps) is None  # first look: the count is noted
    done = await auto.check(shop.app_id, deps)
    assert done is not None and (done.items, done.dim, done.moved) == (N, DIMS, N)
    base = await shop.models.for_type("general")
    stored = await load_projection(shop.objects, shop.app_id, base)
    assert stored is not None and stored.items == N and stored.dim == DIMS
    served = await shop.models.for_app(shop.app_id, "general")
    assert served.version == f"fake-1+lw-{stored.digest}" and done.model == f"a@{served.version}"
    # Every point: the projection of its raw vector, under the projected model's id.
    for i in (0, 17, N - 1):
        point = await shop.point(i)
        assert point.payload[SYSTEM_KEY]["model"] == done.model
        np.testing.assert_allclose(point.vector, stored.apply(await shop.raw_vector(i)), atol=1e-4)
    # The model did not run for the catalog: its raw vectors came from the index.
    # New items go through the projection, and their raw vectors are cached for a refit.
    await shop.insert(N, 5)
    point = await shop.point(N + 2)
    assert len(point.vector) == DIMS and point.payload[SYSTEM_KEY]["model"] == done.model
    content_hash = point.payload[SYSTEM_KEY]["content_hash"]
    assert await shop.objects.exists(vector_key(shop.app_id, base, content_hash))
    # Nothing more to do while the catalog has not doubled.
    assert await auto.check(shop.app_id, deps) is None
    assert await auto.check(shop.app_id, deps) is None


async def test_a_raw_vector_made_just_before_the_swap_is_projected_on_its_way_in(shop: Shop) -> None:
    deps = shop.deps()
    await auto.check(shop.app_id, deps)
    assert await auto.check(shop.app_id, deps) is not None
    raw = await shop.raw_vector(3)
    late = ItemEmbedded(app_id=shop.app_id, trans_id=999_999, im_name="item-3", op=ItemOp.UPSERT,
                        fields={"brand": "late"}, im_url="http://shop.example/3.jpg",
                        image_key=(await shop.point(3)).payload[SYSTEM_KEY]["image_key"],
                        content_hash="c3", colors=[], vector=raw.tolist(), model="a",
                        model_version="fake-1")
    index_deps = IndexDeps(index=shop.index, schemas=shop.schemas, bus=shop.bus,
                           reproject=shop.models.reprojected)
    await on_item_embedded(late, index_deps)
    point = await shop.point(3)
    served = await shop.models.for_app(shop.app_id, "general")
    assert point.payload["brand"] == "late" and point.payload[SYSTEM_KEY]["model"] == f"a@{served.version}"
    assert served.projection is not None
    np.testing.assert_allclose(point.vector, served.projection.apply(raw), atol=1e-4)


async def test_a_grown_catalog_is_refitted_from_cached_raw_vectors(shop: Shop) -> None:
    deps = shop.deps()
    await auto.check(shop.app_id, deps)
    first = await auto.check(shop.app_id, deps)
    assert first is not None
    await shop.insert(N, N)  # doubled, through the first projection
    assert await auto.check(shop.app_id, deps) is None  # grew since the last look
    again = await auto.check(shop.app_id, deps)
    assert again is not None and (again.items, again.moved) == (2 * N, 2 * N)
    assert again.model != first.model
    stored = await load_projection(shop.objects, shop.app_id, await shop.models.for_type("general"))
    assert stored is not None and stored.items == 2 * N
    for i in (5, N + 7):  # an item of the first fit, one added after it
        np.testing.assert_allclose((await shop.point(i)).vector,
                                   stored.apply(await shop.raw_vector(i)), atol=1e-4)


async def test_the_off_marker_and_a_small_catalog_keep_the_raw_model(shop: Shop) -> None:
    await shop.objects.put(auto.off_key(shop.app_id), b"off", "text/plain")
    deps = shop.deps()
    assert await auto.check(shop.app_id, deps) is None
    assert await auto.check(shop.app_id, deps) is None
    await shop.objects.delete(auto.off_key(shop.app_id))
    small = shop.deps(min_items=N + 1)
    assert await auto.check(shop.app_id, small) is None
    assert await auto.check(shop.app_id, small) is None
    assert len((await shop.point(0)).vector) == 16


async def test_an_index_not_on_its_stored_projection_is_moved_to_it(shop: Shop) -> None:
    # As after a crash between storing a projection and the swap: the index is still raw.
    base = await shop.models.for_type("general")
    rng = np.random.default_rng(0)
    stray = Projection(rng.normal(size=16).astype(np.float32),
                       rng.normal(size=(16, DIMS)).astype(np.float32), "learned-whitening", N)
    await save_projection(shop.objects, shop.app_id, base, stray)
    deps = shop.deps(min_items=N + 1)  # no fit is due: only the repair runs
    done = await auto.check(shop.app_id, deps)
    assert done is not None and done.moved == N and done.model.endswith(stray.digest)
    np.testing.assert_allclose((await shop.point(4)).vector, stray.apply(await shop.raw_vector(4)),
                               atol=1e-4)
    assert (await shop.models.for_app(shop.app_id, "general")).version.endswith(stray.digest)
    assert await auto.check(shop.app_id, deps) is None  # consistent now: nothing more
    await shop.insert(N, 3)  # new items come through it
    assert len((await shop.point(N + 1)).vector) == DIMS


async def test_a_fit_is_sized_by_the_catalog_not_by_its_sample(shop: Shop) -> None:
    deps = shop.deps(sample=40)
    await auto.check(shop.app_id, deps)
    done = await auto.check(shop.app_id, deps)
    assert done is not None and done.items == N and done.moved == N
    stored = await load_projection(shop.objects, shop.app_id, await shop.models.for_type("general"))
    assert stored is not None and stored.items == N
    await shop.insert(N, N)  # doubled: refitted once, on a sample of 40 again
    await auto.check(shop.app_id, deps)
    again = await auto.check(shop.app_id, deps)
    assert again is not None and again.items == 2 * N
    # 2 * N >= 2 * sample: that fit read a full sample, so no more refits however it grows.
    await shop.insert(2 * N, 2 * N)
    await auto.check(shop.app_id, deps)
    assert await auto.check(shop.app_id, deps) is None


async def test_stopping_the_task_abandons_a_fit_and_leaves_the_index_alone(shop: Shop) -> None:
    deps = shop.deps()
    deps.seen[shop.app_id] = N  # at rest: the first look fits
    stop = asyncio.Event()
    task = asyncio.create_task(auto.run(deps, stop, 0.01))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert deps.halt.is_set()
    base = await shop.models.for_type("general")
    if await shop.objects.exists(projection_key(shop.app_id, base)):
        # The fit was quicker than the stop: then it finished whole.
        assert len((await shop.point(0)).vector) == DIMS
    else:
        assert len((await shop.point(0)).vector) == 16


async def test_a_projection_is_read_again_only_when_its_digest_changed(shop: Shop, monkeypatch) -> None:
    deps = shop.deps()
    await auto.check(shop.app_id, deps)
    assert await auto.check(shop.app_id, deps) is not None
    base = await shop.models.for_type("general")
    reads: list[str] = []
    original_get = shop.objects.get

    async def counting_get(key: str) -> bytes:
        reads.append(key)
        return await original_get(key)

    monkeypatch.setattr(shop.objects, "get", counting_get)
    key = (shop.app_id, base.name, base.version)

    def expire() -> None:  # as if PROJECTION_TTL_S had passed
        stamp, handle = shop.models._projected[key]
        shop.models._projected[key] = (stamp - 3600, handle)

    before = await shop.models.for_app(shop.app_id, "general")
    expire()
    assert await shop.models.for_app(shop.app_id, "general") is before
    assert projection_key(shop.app_id, base) not in reads and reads  # only the digest was read
    # Another process stores a new projection: the next check reads it.
    rng = np.random.default_rng(1)
    other = Projection(rng.normal(size=16).astype(np.float32),
                       rng.normal(size=(16, DIMS)).astype(np.float32), "learned-whitening", N)
    await save_projection(shop.objects, shop.app_id, base, other)
    expire()
    after = await shop.models.for_app(shop.app_id, "general")
    assert after.version.endswith(other.digest) and projection_key(shop.app_id, base) in reads
