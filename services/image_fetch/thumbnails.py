"""Item thumbnails for dashboards and widgets, made from the stored image on first request."""
from __future__ import annotations

import asyncio
import logging

from magpie.common.errors import NotFound
from magpie.common.ports import ObjectStore
from magpie.image_fetch.images import make_thumbnail
from magpie.image_fetch.state import image_key, load_state, thumbnail_key

log = logging.getLogger(__name__)


async def load_thumbnail(objects: ObjectStore, app_id: str, im_name: str) -> bytes:
    """The item's thumbnail (JPEG); NotFound when the item has no stored image.

    Made at the first request rather than at ingest: most are never shown, and ingest pays
    per object it writes. Kept afterwards under a name tied to the image's content.
    """
    state = await load_state(objects, app_id, im_name)
    if state is None:
        raise NotFound(f"no image stored for {im_name!r}")
    key = thumbnail_key(app_id, im_name, state.content_hash)
    try:
        return await objects.get(key)
    except NotFound:
        pass
    stored = await objects.get(image_key(app_id, im_name))
    thumb = await asyncio.to_thread(make_thumbnail, stored)
    try:
        await objects.put(key, thumb, "image/jpeg")
    except Exception:  # noqa: BLE001 - a cache write: the request is still answered
        log.warning("could not keep the thumbnail of %r in application %s", im_name, app_id,
                    exc_info=True)
    return thumb
