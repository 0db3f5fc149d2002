"""Helpers every pipeline stage shares: reporting an item's failure, passing commands on."""
from __future__ import annotations

import logging
from typing import Literal

from magpie.common.errors import MagpieError
from magpie.common.events.ingest import ItemEvent, ItemStatus
from magpie.common.ports import Bus

log = logging.getLogger(__name__)
Stage = Literal["ingestion", "image-fetch", "embedding", "search"]


async def report_failure(bus: Bus, event: ItemEvent, stage: Stage, err: MagpieError) -> None:
    """Publish the item's final failure with the error's code and message."""
    log.info("item %s/%s failed at %s: %s %s", event.app_id, event.im_name, stage, err.code, err.detail)
    await bus.publish(ItemStatus(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name,
                                 op=event.op, stage=stage, ok=False, error_code=err.code,
                                 error_message=err.detail))


async def report_success(bus: Bus, event: ItemEvent, stage: Stage, warnings: list[str] | None = None) -> None:
    """Publish the item's final success."""
    await bus.publish(ItemStatus(app_id=event.app_id, trans_id=event.trans_id, im_name=event.im_name,
                                 op=event.op, stage=stage, ok=True, warnings=warnings or []))
