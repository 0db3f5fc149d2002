"""search (index side) handlers: plain async functions of (event, deps)."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from magpie.common.controlplane.schema_provider import AppSchema, SchemaProvider
from magpie.common.errors import ImageNameNotFound, MagpieError, NotFound
from magpie.common.events.control import ApplicationDeleted, FieldSpec, SchemaChanged
from magpie.common.events.ingest import ItemEmbedded, ItemOp
from magpie.common.pipeline import report_failure, report_success
from magpie.common.ports import Bus, IndexPoint, VectorIndex
from magpie.search.colors import COLOR_DIM, color_collection, item_color_vector

log = logging.getLogger(__name__)
# System data lives under one key no schema field can take ('@' is not allowed in names).
SYSTEM_KEY = "@sys"


@dataclass
class IndexDeps:
    """What the indexing side of search needs."""

    index: VectorIndex
    schemas: SchemaProvider
    bus: Bus
    # (app_id, image type, model, version, vector) -> (projected version, vector) for a raw
    # vector that met its application's new projection (`Models.reprojected`); None: no
    # projections in this process.
    reproject: Callable[[str, str, str, str, list[float]],
                        Awaitable[tuple[str, list[float]] | None]] | None = None
    _ensured: dict[str, int] = field(default_factory=dict)

    async def ensure(self, schema: AppSchema, dim: int) -> None:
        """Create the collection and payload indexes once per schema version."""
        if self._ensured.get(schema.app_id) == schema.version:
            return
        specs = [FieldSpec(name=f.name, type=f.type, searchable=f.searchable) for f in schema.fields]
        await self.index.ensure_collection(schema.app_id, dim, specs)
        # Colour search's collection filters like the main one: same fields, same indexes.
        await self.index.ensure_collection(color_collection(schema.app_id), COLOR_DIM, specs)
        self._ensured[schema.app_id] = schema.version


def payload_of(event: ItemEmbedded, schema: AppSchema) -> dict[str, Any]:
    """Schema fields the item carries (others dropped) plus the system keys."""
    names = {f.name for f in schema.fields}
    payload: dict[str, Any] = {k: v for k, v in event.fields.items() if k in names}
    if event.op is ItemOp.UPSERT:
        payload[SYSTEM_KEY] = {"im_url": event.im_url, "image_key": event.image_key,
                               "model": f"{event.model}@{event.model_version}", "colors": event.colors,
                               "content_hash": event.content_hash}
    return payload


async def on_item_embedded(event: ItemEmbedded, deps: IndexDeps) -> None:
    """Apply an item command to the index and report the item's final status."""
    try:
        schema = await deps.schemas.get(event.app_id)
    except NotFound:
        return  # application deleted meanwhile
    colors = color_collection(event.app_id)
    try:
        if event.op is ItemOp.REMOVE:
            await deps.index.delete(event.app_id, [event.im_name])
            await deps.index.delete(colors, [event.im_name])
        elif event.op is ItemOp.METADATA:
            payload = payload_of(event, schema)
            if not await deps.index.set_payload(event.app_id, event.im_name, payload):
                raise ImageNameNotFound()
            await deps.index.set_payload(colors, event.im_name, payload)
        else:
            assert event.vector is not None
            event = await _reprojected(event, schema, deps) or event
            payload = await _upsert(event, schema, deps)
            color = item_color_vector(event.colors)
            if color is None:  # no colour extracted: the item is not found by colour
                await deps.index.delete(colors, [event.im_name])
            else:
                await deps.index.upsert(colors, [IndexPoint(event.im_name, color, payload)])
    except MagpieError as err:
        if err.retryable:
            raise
        await report_failure(deps.bus, event, "search", err)
        return
    await report_success(deps.bus, event, "search", event.warnings)


async def _upsert(event: ItemEmbedded, schema: AppSchema, deps: IndexDeps) -> dict[str, Any]:
    """Index the item; its payload."""
    assert event.vector is not None
    await deps.ensure(schema, len(event.vector))
    payload = payload_of(event, schema)
    await deps.index.upsert(event.app_id, [IndexPoint(event.im_name, event.vector, payload)])
    return payload


async def _reprojected(event: ItemEmbedded, schema: AppSchema,
                       deps: IndexDeps) -> ItemEmbedded | None:
    """The event with its raw vector projected, when its application has just moved to a
    projection (auto projection) and the vector was made a moment before; else None."""
    if deps.reproject is None or event.vector is None or event.model is None:
        return None
    moved = await deps.reproject(event.app_id, schema.image_type, event.model,
                                 event.model_version or "", event.vector)
    if moved is None:
        return None
    version, vector = moved
    return event.model_copy(update={"vector": vector, "model_version": version})


async def on_schema_changed(event: SchemaChanged, deps: IndexDeps) -> None:
    """Drop removed fields' data and rebuild payload indexes for the new schema."""
    if event.removed:
        await deps.index.delete_payload_keys(event.app_id, event.removed)
        await deps.index.delete_payload_keys(color_collection(event.app_id), event.removed)
    deps._ensured.pop(event.app_id, None)


async def on_application_deleted(event: ApplicationDeleted, deps: IndexDeps) -> None:
    """Drop a deleted application's collection."""
    await deps.index.drop(event.app_id)
    await deps.index.drop(color_collection(event.app_id))
    deps._ensured.pop(event.app_id, None)
