"""embedding's composition root: the model registry, one batcher per model, subscriptions."""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from magpie.common.events.ingest import ImageReady
from magpie.common.pipeline import ingest_pool
from magpie.common.ports import Bus, ObjectStore
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings
from magpie.embedding.handlers import EmbedDeps, ModelHandle, on_image_ready
from magpie.embedding.projection import Projection

GROUP = "embedding"
PROJECTION_TTL_S = 30.0  # how stale a process's view of an application's projection may be


class Models:
    """Loaded models by image type, each behind one shared batcher."""

    def __init__(self, settings: Settings, executor: Executor | None = None,
                 objects: ObjectStore | None = None) -> None:
        from magpie.embedding.registry import ModelRegistry

        # Where applications' projections are stored (None: no projections, raw models).
        self.objects = objects
        self._projected: dict[tuple[str, str, str], tuple[float, ModelHandle]] = {}

        # Where models load: the process's low-priority ingest pool, whose priority
        # onnxruntime's threads inherit (None: the loop's default threads).
        self.executor = executor

        self.registry = ModelRegistry.from_settings(settings)
        self.max_batch = settings.embedding_batch_size
        self.max_wait_s = settings.embedding_batch_wait_s
        self.bulk_idle = settings.ingest_idle
        self._handles: dict[tuple[str, str], ModelHandle] = {}
        self._batchers: list = []
        self._lock = asyncio.Lock()

    async def for_type(self, image_type: str) -> ModelHandle:
        """The model of an image type, loaded in a thread on first use."""
        from magpie.embedding.batcher import EmbeddingBatcher

        embedder = self.registry.loaded.get(self.registry.spec_for(image_type))
        if embedder is None:
            # Loaded on a low-priority thread: onnxruntime's pool threads inherit its
            # priority, so during an ingest the model yields the cores to searches.
            embedder = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.registry.get, image_type)
        key = (embedder.name, embedder.version)
        async with self._lock:
            handle = self._handles.get(key)
            if handle is None:
                batcher = EmbeddingBatcher(embedder, max_batch=self.max_batch,
                                           max_wait_s=self.max_wait_s, bulk_idle=self.bulk_idle)
                self._batchers.append(batcher)
                handle = self._handles[key] = ModelHandle(embedder.name, embedder.version, batcher.embed)
        return handle

    async def for_app(self, app_id: str, image_type: str) -> ModelHandle:
        """The model an application's vectors come from: its image type's model, through the
        projection fitted on its catalog when it has one (`magpie projection fit`)."""
        from magpie.embedding.app_projection import load_projection, projected, stored_digest

        base = await self.for_type(image_type)
        if self.objects is None:
            return base
        key, now = (app_id, base.name, base.version), time.monotonic()
        hit = self._projected.get(key)
        # Checked now and then: a refit or another process's fit shows up without a restart;
        # between checks every item gets the same handle. The projection itself is read
        # again only when its digest changed.
        if hit is None or now - hit[0] > PROJECTION_TTL_S:
            digest = await stored_digest(self.objects, app_id, base)
            if hit is not None and digest == (hit[1].projection and hit[1].projection.digest):
                handle = hit[1]
            else:
                projection = None if digest is None else await load_projection(self.objects, app_id, base)
                handle = base if projection is None else projected(base, projection)
            hit = self._projected[key] = (now, handle)
        return hit[1]

    def set_projection(self, app_id: str, base: ModelHandle,
                       projection: Projection | None) -> None:
        """Serve `app_id` through `projection` (None: the raw model) from now on, in this
        process; other processes see the stored one within PROJECTION_TTL_S."""
        from magpie.embedding.app_projection import projected

        handle = base if projection is None else projected(base, projection)
        self._projected[(app_id, base.name, base.version)] = (time.monotonic(), handle)

    async def reprojected(self, app_id: str, image_type: str, model: str, version: str,
                          vector: list[float]) -> tuple[str, list[float]] | None:
        """A vector the application's raw model made just before its projection came in,
        projected: (the projected model's version, the vector); None when that is not what
        happened (another model, no projection)."""
        handle = await self.for_app(app_id, image_type)
        raw = handle.raw
        if raw is None or handle.projection is None or (raw.name, raw.version) != (model, version):
            return None
        return handle.version, handle.projection.apply(vector).tolist()

    async def close(self) -> None:
        """Finish queued embeddings and stop the batchers."""
        for batcher in self._batchers:
            await batcher.close()


def subscribe(bus: Bus, deps: EmbedDeps) -> None:
    """The stage's subscriptions."""
    bus.subscribe(ImageReady, GROUP, partial(on_image_ready, deps=deps))


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The embedding stage alone (`magpie run embedding`): the default model is loaded before
    the worker joins its group, so its first batch does not wait for it."""
    from magpie.common.adapters import (
        build_bus,
        build_object_store,
        database_probe,
        object_store_probe,
        open_database,
    )
    from magpie.common.controlplane.schema_provider import SchemaProvider

    engine, db = await open_database(settings)
    pool = ingest_pool(idle=settings.ingest_idle)
    objects = build_object_store(settings)
    models = Models(settings, executor=pool, objects=objects)
    bus = build_bus(settings, client_id="magpie-embedding")
    try:
        await objects.start()
        await models.for_type("general")
        subscribe(bus, EmbedDeps(model_for=models.for_type, objects=objects,
                                 schemas=SchemaProvider(db), bus=bus, executor=pool,
                                 app_model=models.for_app))
        await bus.start()
        yield Service("embedding", bus=bus, checks={"database": database_probe(engine),
                                                    "object_store": object_store_probe(objects)})
    finally:
        await bus.stop()  # first: in-flight records wait on the batchers
        await models.close()
        pool.shutdown(wait=False)
        await objects.stop()
        await engine.dispose()
