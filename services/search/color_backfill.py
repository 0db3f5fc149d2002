"""Colour backfill: give colour search every indexed item, those indexed before colours were
extracted included.

The index is scrolled a page at a time. An item whose payload has no dominant colours gets
them from its stored image (the normalised copy image-fetch kept), written into its payload;
an item missing from the colour collection (`<app_id>.colors`) is added to it. Items that
have both are skipped, so a re-run after an interruption picks up where the last one stopped.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from magpie.common.errors import MagpieError, NotFound
from magpie.common.events.control import FieldSpec
from magpie.common.ports import IndexPoint, ObjectStore, VectorIndex
from magpie.common.progress import Progress, Quiet
from magpie.search.colors import COLOR_DIM, color_collection, item_color_vector
from magpie.search.handlers import SYSTEM_KEY

PAGE = 128  # points per scroll page; their images are read and quantised together


@dataclass
class BackfillResult:
    """What a run did, per point."""

    app_id: str
    total: int = 0
    extracted: int = 0  # colours computed from the stored image
    added: int = 0  # points written to the colour collection
    skipped: int = 0  # already had colours and a colour point
    failed: list[tuple[str, str]] = field(default_factory=list)  # (im_name, why)


async def backfill_colors(app_id: str, index: VectorIndex, objects: ObjectStore,
                          fields: Sequence[FieldSpec], *, page: int = PAGE,
                          progress: Progress | None = None) -> BackfillResult:
    """Extract missing dominant colours and fill the colour collection; see the module."""
    progress, result = progress or Quiet(), BackfillResult(app_id)
    colors = color_collection(app_id)
    await index.ensure_collection(colors, COLOR_DIM, fields)
    present = await _names(index, colors)
    progress.phase("colours", await index.count(app_id))
    offset: str | None = None
    while True:
        batch = await index.scroll(app_id, limit=page, offset=offset)
        todo = [p for p in batch.points if p.im_name not in present or not _system(p).get("colors")]
        result.total += len(batch.points)
        result.skipped += len(batch.points) - len(todo)
        found = await asyncio.gather(*(_colored(app_id, index, objects, p, result) for p in todo))
        points = [p for p in found if p is not None]
        if points:
            await index.upsert(colors, points)
            result.added += len(points)
        progress.advance(len(batch.points))
        if batch.next_offset is None:
            return result
        offset = batch.next_offset


async def _colored(app_id: str, index: VectorIndex, objects: ObjectStore, point: IndexPoint,
                   result: BackfillResult) -> IndexPoint | None:
    """The point's colour point, its colours extracted first when it has none; None (and a
    failure recorded) when it has no usable image."""
    system = _system(point)
    hexes = system.get("colors") or []
    try:
        if not hexes:
            hexes = await _extract(objects, system.get("image_key"))
            system = {**system, "colors": hexes}
            await index.set_payload(app_id, point.im_name, {SYSTEM_KEY: system})
            result.extracted += 1
    except MagpieError as err:
        result.failed.append((point.im_name, err.detail))
        return None
    vector = item_color_vector(hexes)
    if vector is None:
        result.failed.append((point.im_name, "The image has no colour to index."))
        return None
    return IndexPoint(point.im_name, vector, {**point.payload, SYSTEM_KEY: system})


async def _extract(objects: ObjectStore, image_key: str | None) -> list[str]:
    """Dominant colours of a stored image, as image-fetch extracts them at ingest."""
    if not image_key:
        raise NotFound("The point has no stored image.")
    try:
        data = await objects.get(image_key)
    except NotFound:
        raise NotFound(f"The stored image {image_key} is missing.") from None
    return await asyncio.to_thread(_dominant, data)


def _dominant(data: bytes) -> list[str]:
    from PIL import UnidentifiedImageError

    from magpie.image_fetch.colors import dominant_colors
    from magpie.image_fetch.images import open_stored

    try:
        return dominant_colors(open_stored(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NotFound(f"The stored image cannot be read: {exc}") from None


async def _names(index: VectorIndex, collection: str) -> set[str]:
    """Every im_name a collection holds (payloads narrowed to the name)."""
    names: set[str] = set()
    offset: str | None = None
    while True:
        batch = await index.scroll(collection, limit=1000, offset=offset, fields=[])
        names.update(p.im_name for p in batch.points)
        if batch.next_offset is None:
            return names
        offset = batch.next_offset


def _system(point: IndexPoint) -> dict[str, Any]:
    return dict(point.payload.get(SYSTEM_KEY) or {})
