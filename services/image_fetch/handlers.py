"""image-fetch handlers: plain async functions of (event, deps)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from magpie.common.errors import MagpieError
from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ImageReady, ItemAccepted, ItemOp
from magpie.common.pipeline import report_failure
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
    from magpie.image_fetch.images import decode_and_normalise

    assert event.im_url is not None
    prior = await load_state(deps.objects, event.app_id, event.im_name)
    same_url = prior is not None and prior.url == event.im_url
    result = await deps.fetcher.fetch(  # type: ignore[attr-defined]
        event.im_url, etag=prior.etag if same_url else None,
        last_modified=prior.last_modified if same_url else None)
    if result.status == "not_modified" and prior is not None:
        return prior
    norm = await asyncio.to_thread(decode_and_normalise, result.content, min_side=deps.min_side)
    if prior is not None and prior.content_hash == norm.content_hash and await deps.objects.exists(
            image_key(event.app_id, event.im_name)):
        state = prior
        state.url, state.etag, state.last_modified = event.im_url, result.etag, result.last_modified
    else:
        colors = await asyncio.to_thread(dominant_colors, norm.image)
        await deps.objects.put(image_key(event.app_id, event.im_name), norm.jpeg, "image/jpeg")
        await deps.objects.put(thumbnail_key(event.app_id, event.im_name), norm.thumbnail, "image/jpeg")
        state = FetchState(url=event.im_url, content_hash=norm.content_hash, etag=result.etag,
                           last_modified=result.last_modified, width=norm.width, height=norm.height,
                           colors=colors, warnings=list(norm.warnings))
    await save_state(deps.objects, event.app_id, event.im_name, state)
    return state
