"""Every event type by topic: used to decode messages and to export JSON Schema."""
from __future__ import annotations

from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.events.base import Event
from magpie.common.events.control import ApplicationCreated, ApplicationDeleted, SchemaChanged
from magpie.common.events.ingest import ImageReady, ItemAccepted, ItemEmbedded, ItemStatus

EVENT_TYPES: dict[str, type[Event]] = {
    cls.topic: cls
    for cls in (
        ApplicationCreated, ApplicationDeleted, SchemaChanged,
        ItemAccepted, ImageReady, ItemEmbedded, ItemStatus,
        EventTracked, SearchServed,
    )
}


def event_type_for(topic: str) -> type[Event]:
    """The event model that travels on `topic`."""
    try:
        return EVENT_TYPES[topic]
    except KeyError:
        raise KeyError(f"no event type is registered for topic {topic!r}") from None
