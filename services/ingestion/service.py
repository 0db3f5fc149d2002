"""Ingestion use cases: insert, update, remove, status. Called by routes, CSV and SFTP feeds."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.controlplane.schema_rules import MAX_IM_NAME_LEN
from magpie.common.errors import ImageNameNotFound, InvalidImageName, MagpieError
from magpie.common.events.ingest import ItemAccepted, ItemOp
from magpie.common.ports import Bus
from magpie.ingestion.store import IngestStore, new_trans_id
from magpie.ingestion.validation import ItemError, RawItem, validate_item


@dataclass
class IngestDeps:
    """What the ingestion use cases need; built by the composition root."""

    store: IngestStore
    bus: Bus
    schemas: SchemaProvider


@dataclass
class BatchResult:
    """What a batch call answers at once: its transaction and the items refused up front."""

    trans_id: int | None
    total: int
    errors: list[ItemError] = field(default_factory=list)


async def insert(deps: IngestDeps, app_id: str, items: Sequence[RawItem | tuple[int, Mapping[str, Any]]],
                 source: str = "api") -> BatchResult:
    """Validate a batch, record it, publish one event per valid item; a bad item never fails the rest.

    Re-inserting an im_name updates it; an item with only im_name and fields (no im_url)
    updates its metadata without a download. Within a batch the last row of a name wins.
    """
    rows = [(i.index, i.values) if isinstance(i, RawItem) else i for i in items]
    schema = await deps.schemas.get(app_id)
    names = [v.get("im_name") for _, v in rows if isinstance(v.get("im_name"), str)]
    known = await deps.store.existing(app_id, names)
    accepted: dict[str, ItemAccepted] = {}
    errors: list[ItemError] = []
    for index, values in rows:
        try:
            item = validate_item(index, values, list(schema.fields),
                                 exists=values.get("im_name") in known or values.get("im_name") in accepted)
        except MagpieError as err:
            name = values.get("im_name")
            errors.append(ItemError(index, name if isinstance(name, str) else None, err))
            continue
        op = ItemOp.UPSERT if item.im_url else ItemOp.METADATA
        accepted.pop(item.im_name, None)  # keep the last occurrence, in its own position
        accepted[item.im_name] = ItemAccepted(app_id=app_id, trans_id=0, im_name=item.im_name, op=op,
                                              im_url=item.im_url, fields=item.fields)
    return await _submit(deps, app_id, source, list(accepted.values()), errors)


async def remove(deps: IngestDeps, app_id: str, names: Sequence[tuple[int, Any]], source: str = "api") -> BatchResult:
    """Remove items by im_name; unknown names are reported (102) and the rest go on."""
    errors: list[ItemError] = []
    candidates: dict[str, int] = {}
    for index, name in names:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_IM_NAME_LEN:
            errors.append(ItemError(index, name if isinstance(name, str) else None, InvalidImageName()))
        else:
            candidates[name] = index
    known = await deps.store.existing(app_id, list(candidates))
    events = []
    for name, index in candidates.items():
        if name in known:
            events.append(ItemAccepted(app_id=app_id, trans_id=0, im_name=name, op=ItemOp.REMOVE))
        else:
            errors.append(ItemError(index, name, ImageNameNotFound()))
    return await _submit(deps, app_id, source, events, errors)


async def _submit(deps: IngestDeps, app_id: str, source: str, events: list[ItemAccepted],
                  errors: list[ItemError]) -> BatchResult:
    if not events:
        return BatchResult(trans_id=None, total=0, errors=errors)
    trans_id = new_trans_id()
    events = [e.model_copy(update={"trans_id": trans_id}) for e in events]
    # Recorded before publishing: from the moment the call answers, the status is exact,
    # and a crash before every event is out is repaired by `replay_pending` on start.
    await deps.store.open_transaction(app_id, source, events, trans_id)
    for event in events:
        await deps.bus.publish(event)
    return BatchResult(trans_id=trans_id, total=len(events), errors=errors)


async def replay_pending(deps: IngestDeps) -> int:
    """Publish again every item that has no outcome yet (after a crash); returns how many."""
    pending = await deps.store.pending()
    for event in pending:
        await deps.bus.publish(event)
    return len(pending)
