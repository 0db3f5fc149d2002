"""image-fetch hands its decoded image to embedding in-process; a miss reads the stored copy.

Real HTTP (the image fixture server), real fetcher, real local object store and real
decoding; the model is a small pixel-statistics embedder, so the test checks the routing of
images, not a network's weights.
"""
from __future__ import annotations

import numpy as np
import pytest

from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.events.ingest import ImageReady, ItemAccepted, ItemEmbedded, ItemOp
from magpie.common.pipeline import DecodedImages
from magpie.common.storage.local import LocalObjectStore
from magpie.embedding.handlers import EmbedDeps, ModelHandle, on_image_ready
from magpie.image_fetch.fetcher import ImageFetcher
from magpie.image_fetch.handlers import FetchDeps, on_item_accepted
from tests.fixtures.recording import RecordingBus

pytestmark = pytest.mark.integration


class Schemas:
    async def get(self, app_id: str, max_age_s: float = 0.0) -> AppSchema:
        return AppSchema(app_id, 1, ())


class PixelModel:
    """Mean and spread of each channel on a 32 px copy: a vector that follows the picture."""

    def __init__(self) -> None:
        self.seen: list = []

    async def embed(self, image) -> np.ndarray:  # noqa: ANN001
        self.seen.append(image)
        small = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32)
        v = np.concatenate([small.mean(axis=(0, 1)), small.std(axis=(0, 1))])
        return v / np.linalg.norm(v)


async def _fetch_then_embed(image_server, tmp_path, images: DecodedImages, drop_stored: bool = False,
                            fetch_images: DecodedImages | None = None):
    objects = LocalObjectStore(tmp_path / "objects")
    await objects.start()
    bus, model = RecordingBus(), PixelModel()
    async with ImageFetcher(allow_private=True, backoff_s=0.01) as fetcher:
        fetch = FetchDeps(fetcher=fetcher, objects=objects, bus=bus, images=images if fetch_images is None else fetch_images)
        embed = EmbedDeps(model_for=lambda _t: _handle(model), objects=objects, schemas=Schemas(),
                          bus=bus, images=images)
        await on_item_accepted(ItemAccepted(app_id="app_t", trans_id=1, im_name="shoe", op=ItemOp.UPSERT,
                                            im_url=f"{image_server}/ok/shoe.jpeg"), fetch)
        [ready] = bus.events
        assert isinstance(ready, ImageReady) and ready.content_hash
        if drop_stored:  # the stored copy must not be needed when the hand-off has the image
            await objects.delete(ready.image_key)
        await on_image_ready(ready, embed)
    embedded = bus.events[-1]
    assert isinstance(embedded, ItemEmbedded) and embedded.vector is not None
    return ready, embedded, model


async def _handle(model: PixelModel) -> ModelHandle:
    return ModelHandle("pixels", "1", model.embed)


async def test_embedding_takes_the_decoded_image_without_reading_the_store(image_server, tmp_path):
    images = DecodedImages()
    images.attach_consumer()
    _, embedded, model = await _fetch_then_embed(image_server, tmp_path, images, drop_stored=True)
    assert images.hits == 1 and len(images) == 0  # taken once, nothing left behind
    assert model.seen[0].mode == "RGB" and model.seen[0].size == (120, 90)


async def test_a_miss_reads_and_decodes_the_stored_copy_to_the_same_vector(image_server, tmp_path):
    handed = DecodedImages()
    handed.attach_consumer()
    _, via_handoff, _ = await _fetch_then_embed(image_server, tmp_path / "a", handed)
    # As in the distributed mode: image-fetch's process keeps its images (none: no consumer
    # there), embedding's process has its own, empty hand-off.
    elsewhere, cold = DecodedImages(), DecodedImages()
    _, via_store, model = await _fetch_then_embed(image_server, tmp_path / "b", cold,
                                                  fetch_images=elsewhere)
    assert (cold.hits, cold.misses, len(elsewhere)) == (0, 1, 0)
    assert model.seen[0].size == (120, 90)
    # The hand-off carries the stored JPEG's pixels: the very vector the store path gives.
    assert via_handoff.vector == via_store.vector
