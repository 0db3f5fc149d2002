"""What image-fetch remembers per item: the URL, validators and content hash of its image.

Kept beside the image in the object store, so the service owns its state in every mode.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from magpie.common.errors import NotFound
from magpie.common.ports import ObjectStore


def item_prefix(app_id: str, im_name: str) -> str:
    """Object-store folder of one item (hashed: im_name may hold any character)."""
    return f"{app_id}/items/{hashlib.sha256(im_name.encode()).hexdigest()[:32]}/"


def image_key(app_id: str, im_name: str) -> str:
    """The item's stored image (`images.NormalisedImage.stored`; the name predates copies
    kept in their own format: read it with `images.open_stored`)."""
    return item_prefix(app_id, im_name) + "image.jpg"


def thumbnail_key(app_id: str, im_name: str, content_hash: str) -> str:
    """The thumbnail of one version of the item's image, made on its first request.

    Named by content so that a thumbnail made from an image being replaced can never be
    served for the new one.
    """
    return item_prefix(app_id, im_name) + f"thumb-{content_hash[:16]}.jpg"


@dataclass
class FetchState:
    url: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    width: int
    height: int
    colors: list[str]
    warnings: list[str]


async def load_state(objects: ObjectStore, app_id: str, im_name: str) -> FetchState | None:
    """The remembered state, or None for a new item (or unreadable state)."""
    try:
        raw = await objects.get(item_prefix(app_id, im_name) + "fetch.json")
    except NotFound:
        return None
    try:
        return FetchState(**json.loads(raw))
    except (ValueError, TypeError):
        return None


async def save_state(objects: ObjectStore, app_id: str, im_name: str, state: FetchState) -> None:
    """Remember the state for the next fetch of this item."""
    await objects.put(item_prefix(app_id, im_name) + "fetch.json", json.dumps(asdict(state)).encode(),
                      "application/json")
