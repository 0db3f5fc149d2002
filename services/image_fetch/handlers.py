"""image-fetch handlers: plain async functions of (event, deps)."""
from __future__ import annotations

import logging

from magpie.common.events.control import ApplicationDeleted
from magpie.common.ports import ObjectStore

log = logging.getLogger(__name__)


async def on_application_deleted(event: ApplicationDeleted, objects: ObjectStore) -> None:
    """Delete every stored image and thumbnail of a deleted application (idempotent)."""
    removed = await objects.delete_prefix(f"{event.app_id}/")
    log.info("deleted %d objects of application %s", removed, event.app_id)
