"""Control-plane events: applications and their schemas."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from magpie.common.events.base import Event


class FieldSpec(BaseModel):
    """One schema field as it travels on the bus."""

    name: str
    type: Literal["string", "text", "int", "float"]
    searchable: bool = False


class ApplicationCreated(Event):
    """An application (one catalog) now exists."""

    topic = "application.created"
    version: Literal[1] = 1
    name: str
    image_type: str


class ApplicationDeleted(Event):
    """An application is gone: every service drops its index, images and data."""

    topic = "application.deleted"
    version: Literal[1] = 1


class SchemaChanged(Event):
    """An application's schema has a new version; `removed` fields lose their data."""

    topic = "schema.changed"
    version: Literal[1] = 1
    schema_version: int
    fields: list[FieldSpec]
    removed: list[str] = []
