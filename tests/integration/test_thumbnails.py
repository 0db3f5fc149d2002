"""Thumbnails are made from the stored image on first request, kept, and follow a new image.

Real HTTP (the image fixture server), real fetcher, real local object store, real decoding.
"""
from __future__ import annotations

import io

import pytest
from PIL import Image

from magpie.common.errors import NotFound
from magpie.common.events.ingest import ItemAccepted, ItemOp
from magpie.common.storage.local import LocalObjectStore
from magpie.image_fetch.fetcher import ImageFetcher
from magpie.image_fetch.handlers import FetchDeps, on_item_accepted
from magpie.image_fetch.state import load_state, thumbnail_key
from magpie.image_fetch.thumbnails import load_thumbnail
from tests.fixtures.recording import RecordingBus

pytestmark = pytest.mark.integration


async def _keys(objects: LocalObjectStore) -> set[str]:
    return set(await objects.list("app_t/"))


async def test_made_once_on_request_and_replaced_with_the_image(image_server, tmp_path):
    objects = LocalObjectStore(tmp_path / "objects")
    await objects.start()
    async with ImageFetcher(allow_private=True, backoff_s=0.01) as fetcher:
        deps = FetchDeps(fetcher=fetcher, objects=objects, bus=RecordingBus())

        async def ingest(url: str) -> str:
            await on_item_accepted(ItemAccepted(app_id="app_t", trans_id=1, im_name="shoe",
                                                op=ItemOp.UPSERT, im_url=url), deps)
            state = await load_state(objects, "app_t", "shoe")
            assert state is not None
            return thumbnail_key("app_t", "shoe", state.content_hash)

        first = await ingest(f"{image_server}/ok/shoe.jpeg")
        # Ingest writes the image and its fetch state, no thumbnail.
        assert not any("thumb" in key for key in await _keys(objects))
        thumb = await load_thumbnail(objects, "app_t", "shoe")
        assert Image.open(io.BytesIO(thumb)).format == "JPEG"
        assert await objects.get(first) == thumb  # kept for the next request
        assert await load_thumbnail(objects, "app_t", "shoe") == thumb

        second = await ingest(f"{image_server}/ok/shoe.png")  # new content, same item
        assert second != first
        assert not await objects.exists(first)  # the old version's thumbnail is gone
        assert Image.open(io.BytesIO(await load_thumbnail(objects, "app_t", "shoe"))).size == (120, 90)
        assert await objects.exists(second)

    with pytest.raises(NotFound):
        await load_thumbnail(objects, "app_t", "no-such-item")
