"""Versioned wire events, one module per topic family; `registry` lists them all."""
from magpie.common.events.base import Event
from magpie.common.events.registry import EVENT_TYPES, event_type_for

__all__ = ["EVENT_TYPES", "Event", "event_type_for"]
