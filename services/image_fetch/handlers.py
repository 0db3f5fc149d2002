"""image-fetch handlers: plain async functions of (event, deps)."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

from magpie.common.errors import MagpieError
from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ImageReady, ItemAccepted, ItemOp
from magpie.common.pipeline import (
    DecodedImages,
    report_failure,
)
from magpie.common.ports import Bus, ObjectStore
from magpie.image_fetch.colors import dominant_colors
from magpie.image_fetch.state import (
    FetchState,
    image_key,
    item_prefix,
    load_state,
    save_state,
    thumbnail_key,
)

log = logging.getLogger(__name__)


@dataclass
class FetchDeps:
    """What the image-fetch stage needs."""

    fetcher: object  # magpie.image_fetch.fetcher.ImageFetcher (kept loose: tests pass fakes of the HTTP side)
    objects: ObjectStore
    bus: Bus
    min_side: int = 32
    # Hand-off of the decoded image to embedding in this process (None: no hand-off).
    images: DecodedImages | None = None
    # Where decoding and resizing run: low-priority threads, so searches go first.
    executor: Executor | None = None


async def on_application_deleted(event: ApplicationDeleted, objects: ObjectStore) -> None:
    """Delete every stored image and thumbnail of a deleted application (idempotent)."""
    removed = await objects.delete_prefix(f"{event.app_id}/")
    log.info("deleted %d objects of application %s", removed, event.app_id)


def _ready(event: ItemAccepted, **extra: object) -> ImageReady:
    return ImageReady(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name, op=event.op,
                      fields=event.fields, im_url=event.im_url, **extra)


async def on_item_accepted(event: ItemAccepted, deps: FetchDeps) -> None:
    """Download, check and store an item's image; metadata updates and removals pass through.

    An unchanged image (304, or the same bytes) is neither stored again nor re-embedded
    downstream: the embedding stage finds its vector by content hash.
    """
    if event.op is ItemOp.REMOVE:
        await deps.objects.delete_prefix(item_prefix(event.app_id, event.im_name))
        await deps.bus.publish(_ready(event))
        return
    if event.op is ItemOp.METADATA:
        await deps.bus.publish(_ready(event))
        return
    try:
        state = await _fetch_and_store(event, deps)
    except MagpieError as err:
        if err.retryable:
            raise  # the bus retries with backoff, then dead-letters
        await report_failure(deps.bus, event, "image-fetch", err)
        return
    await deps.bus.publish(_ready(event, image_key=image_key(event.app_id, event.im_name),
                                  content_hash=state.content_hash, width=state.width, height=state.height,
                                  colors=state.colors, warnings=state.warnings))


async def _fetch_and_store(event: ItemAccepted, deps: FetchDeps) -> FetchState:
    assert event.im_url is not None
    prior = await load_state(deps.objects, event.app_id, event.im_name)
    same_url = prior is not None and prior.url == event.im_url
    result = await deps.fetcher.fetch(  # type: ignore[attr-defined]
        event.im_url, etag=prior.etag if same_url else None,
        last_modified=prior.last_modified if same_url else None)
    if result.status == "not_modified" and prior is not None:
        return prior
    loop = asyncio.get_running_loop()
    # One hop for all the pixel work: each hop costs a wake-up of the event loop.
    norm, colors = await loop.run_in_executor(deps.executor, _normalise, result.content, deps.min_side)
    stored = False
    if prior is not None and prior.content_hash == norm.content_hash and await deps.objects.exists(
            image_key(event.app_id, event.im_name)):
        state = prior  # unchanged content: embedding finds its vector by content hash
        state.url, state.etag, state.last_modified = event.im_url, result.etag, result.last_modified
    else:
        # One object per image: thumbnails are made on their first request (most are never
        # shown, and every object written costs a file creation here).
        key = image_key(event.app_id, event.im_name)
        await deps.objects.put(key, norm.stored, norm.stored_type)
        if prior is not None:  # the old version's thumbnail, if one was ever made
            old = thumbnail_key(event.app_id, event.im_name, prior.content_hash)
            await deps.objects.delete(old)
        state = FetchState(url=event.im_url, content_hash=norm.content_hash, etag=result.etag,
                           last_modified=result.last_modified, width=norm.width, height=norm.height,
                           colors=colors, warnings=list(norm.warnings))
        stored = True
    await save_state(deps.objects, event.app_id, event.im_name, state)
    if stored and deps.images is not None:
        # Offered only once the stored copy exists, so either path embeds the same picture.
        deps.images.put(norm.content_hash, norm.image)
    return state


def _normalise(data: bytes, min_side: int):  # noqa: ANN202 - (NormalisedImage, colours)
    from magpie.image_fetch.images import decode_and_normalise

    norm = decode_and_normalise(data, min_side=min_side)
    colors = dominant_colors(norm.image)
    # What embedding gets is the stored copy's pixels, as when it reads the store (and as
    # reindex and an upload search of the same picture see them).
    norm.image = norm.stored_pixels()
    return norm, colors
