"""The query image of an upload search: decoded from a file, fetched from `im_url`, or read
back by `im_id`; cropped to `box`; kept in the object store for a while so a client pages
without uploading again.

Stored per query: `<app>/queries/<YYYYMMDD>/<hex>.jpg` (the normalised image, longer side at
most 1024 px) and `.json` (the original size, which `box` coordinates refer to). The im_id,
`<YYYYMMDD><hex>.jpg` as in the reference's examples, names the day, so expiry needs no
index: an im_id older than QUERY_TTL_DAYS is refused, and whole expired days are deleted.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from PIL import Image

from magpie.common.errors import (
    DownloadFailed,
    ImageDownloadFailed,
    ImageDownloadTimeout,
    ImageIdNotFound,
    InvalidImageDimension,
    InvalidImageFormat,
    InvalidImageUrl,
    MagpieError,
    NotFound,
    UnsupportedDimension,
    UnsupportedFormat,
)
from magpie.common.ports import ObjectStore
from magpie.image_fetch.images import decode_and_normalise, open_stored
from magpie.search.params import Box

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the reference's upload limit
QUERY_TTL_DAYS = 2  # an im_id lives at least one whole day
FETCH_TIMEOUT_S = 15.0  # a shopper waits; ingestion's fetcher alone would retry for 30 s
SWEEP_EVERY_S = 3600.0
SWEEP_DAYS = 7  # expired days looked at per sweep (older ones were swept before)
_last_sweep: dict[str, float] = {}


@dataclass
class QueryImage:
    """A decoded query image and the size of the original, which `box` refers to."""

    image: Image.Image
    width: int
    height: int
    stored: bytes = b""  # what is kept for paging by im_id (images.NormalisedImage.stored)
    stored_type: str = "image/jpeg"


def _reason(err: MagpieError, cls: type[MagpieError]) -> MagpieError:
    """The reference's message with the cause appended, as a typed search error."""
    return cls(f"{cls.message.rstrip('.')}: {err.detail.rstrip('.')}.")


async def decode(data: bytes, *, min_side: int, from_url: bool = False) -> QueryImage:
    """Decode and normalise image bytes; 1102 (1104 for an im_url) when they are no image."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise (InvalidImageUrl if from_url else InvalidImageFormat)(
            f"The image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    try:
        norm = await asyncio.to_thread(_normalised, data, min_side)
    except UnsupportedDimension as err:
        raise _reason(err, InvalidImageDimension) from None
    except UnsupportedFormat as err:
        raise _reason(err, InvalidImageUrl if from_url else InvalidImageFormat) from None
    return QueryImage(norm.image, norm.width, norm.height, norm.stored, norm.stored_type)


def _normalised(data: bytes, min_side: int):  # noqa: ANN202 - NormalisedImage
    norm = decode_and_normalise(data, min_side=min_side)
    # Indexed items are embedded from their stored copy: so is the query, or the same photo
    # would not find itself at full score.
    norm.image = norm.stored_pixels()
    return norm


def download_error(err: DownloadFailed) -> MagpieError:
    """The search error of a failed download: 1106, 1105 or 1104."""
    # 1106 a timeout; 1105 the server or the network failing (worth trying later); 1104
    # anything wrong with the URL or its answer.
    text = err.detail
    if "timed out" in text or "did not finish" in text:
        return _reason(err, ImageDownloadTimeout)
    if any(s in text for s in ("answered HTTP 5", "answered HTTP 429", "connection failed",
                               "could not be resolved", "has no addresses")):
        return _reason(err, ImageDownloadFailed)
    return _reason(err, InvalidImageUrl)


async def fetch(fetcher: Any, url: str, *, min_side: int) -> QueryImage:
    """Download `im_url` under the fetcher's network policy and decode it."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            result = await fetcher.fetch(url)
    except TimeoutError:
        raise ImageDownloadTimeout() from None
    except DownloadFailed as err:
        raise download_error(err) from None
    return await decode(result.content or b"", min_side=min_side, from_url=True)


def crop(query: QueryImage, box: Box | None) -> Image.Image:
    """The region `box` (original pixels) of the normalised image, else the whole image."""
    if box is None:
        return query.image
    sx, sy = query.image.width / query.width, query.image.height / query.height
    left, top = max(0.0, box.x1 * sx), max(0.0, box.y1 * sy)
    right, bottom = min(query.image.width, box.x2 * sx), min(query.image.height, box.y2 * sy)
    if right - left < 1 or bottom - top < 1:
        return query.image
    return query.image.crop((round(left), round(top), round(right), round(bottom)))


def new_im_id(today: date | None = None) -> str:
    """A fresh im_id for today."""
    day = today or datetime.now(UTC).date()
    return f"{day:%Y%m%d}{secrets.token_hex(16)}.jpg"


def object_key(app_id: str, im_id: str, today: date | None = None) -> str:
    """The object key of an im_id (without extension); 1110 when it is malformed or expired."""
    stem = im_id[:-4] if im_id.endswith(".jpg") else ""
    day_text, token = stem[:8], stem[8:]
    try:
        day = datetime.strptime(day_text, "%Y%m%d").date()
        int(token, 16)
    except ValueError:
        raise ImageIdNotFound("Missing im_id: it is not one this server gave out.") from None
    today = today or datetime.now(UTC).date()
    if len(token) != 32 or not 0 <= (today - day).days < QUERY_TTL_DAYS:
        raise ImageIdNotFound("Missing im_id: it has expired; search with the image again.")
    return f"{app_id}/queries/{day_text}/{token}"


async def save(objects: ObjectStore, app_id: str, im_id: str, query: QueryImage) -> None:
    """Keep the query image for paging by im_id, and now and then drop expired days."""
    key = object_key(app_id, im_id)
    meta = json.dumps({"width": query.width, "height": query.height}).encode()
    await asyncio.gather(objects.put(key + ".jpg", query.stored, query.stored_type),
                         objects.put(key + ".json", meta, "application/json"))
    await sweep(objects, app_id)


async def load(objects: ObjectStore, app_id: str, im_id: str) -> QueryImage:
    """The query image of an im_id; 1110 when it is unknown or expired."""
    key = object_key(app_id, im_id)
    try:
        data, meta = await asyncio.gather(objects.get(key + ".jpg"), objects.get(key + ".json"))
    except NotFound:
        raise ImageIdNotFound("Missing im_id: it is unknown; search with the image.") from None
    size = json.loads(meta)
    image = await asyncio.to_thread(open_stored, data)
    return QueryImage(image, int(size["width"]), int(size["height"]), data)


async def sweep(objects: ObjectStore, app_id: str, today: date | None = None) -> int:
    """Delete the query images of expired days (at most once an hour per application)."""
    now = time.monotonic()
    if now - _last_sweep.get(app_id, -SWEEP_EVERY_S) < SWEEP_EVERY_S:
        return 0
    _last_sweep[app_id] = now
    today = today or datetime.now(UTC).date()
    removed = 0
    for back in range(QUERY_TTL_DAYS, QUERY_TTL_DAYS + SWEEP_DAYS):
        day = today - timedelta(days=back)
        removed += await objects.delete_prefix(f"{app_id}/queries/{day:%Y%m%d}/")
    return removed
