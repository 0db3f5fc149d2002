"""embedding handlers: plain async functions of (event, deps)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.errors import MagpieError, NotFound, UnsupportedFormat
from magpie.common.events.ingest import ImageReady, ItemEmbedded, ItemOp
from magpie.common.pipeline import (
    BULK_WORK,
    DecodedImages,
    report_failure,
)
from magpie.common.ports import Bus, ObjectStore
from magpie.embedding.projection import Projection


@dataclass
class ModelHandle:
    """One loaded model: its identity and an async embed of one image (batched behind)."""

    name: str
    version: str
    embed: Callable[[object], Awaitable[np.ndarray]]
    # A projected handle (`app_projection.projected`): the model under it and the projection,
    # so an image's cached raw vector is projected instead of embedded again.
    raw: ModelHandle | None = None
    projection: Projection | None = None


@dataclass
class EmbedDeps:
    """What the embedding stage needs."""

    model_for: Callable[[str], Awaitable[ModelHandle]]  # image type → loaded model
    objects: ObjectStore
    schemas: SchemaProvider
    bus: Bus
    # Images image-fetch decoded in this process, by content hash (None: always read the store).
    images: DecodedImages | None = None
    # Where a stored image is decoded when the hand-off missed: low-priority threads.
    executor: Executor | None = None
    # (app_id, image type) → the application's model, its catalog projection applied when it
    # has one; None: `model_for` alone.
    app_model: Callable[[str, str], Awaitable[ModelHandle]] | None = None

    def __post_init__(self) -> None:
        if self.images is not None:
            self.images.attach_consumer()


def vector_key(app_id: str, model: ModelHandle, content_hash: str) -> str:
    """Where a vector is cached: by model and image content, so identical images and
    re-inserts of unchanged images are embedded once."""
    return f"{app_id}/vectors/{model.name}@{model.version}/{content_hash}.f32"


async def cached_vector(objects: ObjectStore, app_id: str, model: ModelHandle,
                        content_hash: str) -> np.ndarray | None:
    """The cached vector of an image for `model`: its own, or for a projected model the raw
    model's projected (and then cached under the projected model too); None when neither."""
    try:
        return np.frombuffer(await objects.get(vector_key(app_id, model, content_hash)),
                             dtype=np.float32)
    except NotFound:
        pass
    if model.raw is None or model.projection is None:
        return None
    try:
        raw = np.frombuffer(await objects.get(vector_key(app_id, model.raw, content_hash)),
                            dtype=np.float32)
    except NotFound:
        return None
    vector = model.projection.apply(raw)
    await objects.put(vector_key(app_id, model, content_hash), vector.tobytes())
    return vector


def _pass(event: ImageReady, **extra: object) -> ItemEmbedded:
    return ItemEmbedded(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name, op=event.op,
                        fields=event.fields, im_url=event.im_url, image_key=event.image_key,
                        content_hash=event.content_hash, colors=event.colors, warnings=event.warnings,
                        **extra)


async def on_image_ready(event: ImageReady, deps: EmbedDeps) -> None:
    """Embed an item's image with its application's model (cached by content)."""
    if event.op is not ItemOp.UPSERT:
        await deps.bus.publish(_pass(event))
        return
    try:
        # Only the image type is needed here; it changes rarely, so a few seconds' cache
        # saves a database round trip per item.
        schema = await deps.schemas.get(event.app_id, max_age_s=5.0)
    except NotFound:
        return  # the application was deleted meanwhile: nothing to index
    model = (await deps.app_model(event.app_id, schema.image_type) if deps.app_model is not None
             else await deps.model_for(schema.image_type))
    # Bulk work: a batcher shared with the search API serves its requests first.
    token = BULK_WORK.set(True)
    try:
        vector = await _vector(event, model, deps)
    except MagpieError as err:
        if err.retryable:
            raise
        await report_failure(deps.bus, event, "embedding", err)
        return
    finally:
        BULK_WORK.reset(token)
    await deps.bus.publish(_pass(event, vector=vector.astype(np.float32).tolist(), model=model.name,
                                 model_version=model.version))


async def _vector(event: ImageReady, model: ModelHandle, deps: EmbedDeps) -> np.ndarray:
    assert event.image_key and event.content_hash
    key = vector_key(event.app_id, model, event.content_hash)
    cached = await cached_vector(deps.objects, event.app_id, model, event.content_hash)
    if cached is not None:
        return cached
    image = deps.images.take(event.content_hash) if deps.images is not None else None
    if image is None:
        data = await deps.objects.get(event.image_key)
        image = await asyncio.get_running_loop().run_in_executor(deps.executor, _open, data)
    if model.raw is not None and model.projection is not None:
        # The raw vector is kept too: a refit or `magpie projection drop` then moves this item
        # without running the model again.
        raw = np.asarray(await model.raw.embed(image), dtype=np.float32)
        await deps.objects.put(vector_key(event.app_id, model.raw, event.content_hash), raw.tobytes())
        vector = model.projection.apply(raw)
    else:
        vector = np.asarray(await model.embed(image), dtype=np.float32)
    await deps.objects.put(key, vector.tobytes())
    return vector


def _open(data: bytes):  # noqa: ANN202 - PIL image
    from magpie.image_fetch.images import open_stored

    try:
        return open_stored(data)
    except Exception as exc:  # noqa: BLE001 - a stored image that no longer decodes
        raise UnsupportedFormat(f"Stored image cannot be decoded: {exc}") from exc
