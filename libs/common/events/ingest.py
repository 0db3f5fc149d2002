"""Catalog ingestion events: one command stream per item, through every stage in order.

Every item command (upsert, metadata-only update, removal) travels the same topics,
keyed by `app_id:im_name`, so a later command for an item never overtakes an earlier one.
Stages a command does not concern pass it through untouched.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from magpie.common.events.base import Event


class ItemOp(StrEnum):
    UPSERT = "upsert"  # new image or re-insert: fetch, embed, index
    METADATA = "metadata"  # only fields changed: no download, no embedding
    REMOVE = "remove"


class ItemEvent(Event):
    """Fields every per-item event carries."""

    trans_id: int
    im_name: str
    op: ItemOp

    def key(self) -> str:
        """Per item: one item's events stay ordered, items spread over partitions."""
        return f"{self.app_id}:{self.im_name}"


class ItemAccepted(ItemEvent):
    """Ingestion validated an item against the schema (values already typed)."""

    topic = "item.accepted"
    version: Literal[1] = 1
    im_url: str | None = None
    fields: dict[str, Any] = {}


class ImageReady(ItemEvent):
    """image-fetch stored the normalised image (or found it unchanged)."""

    topic = "image.ready"
    version: Literal[1] = 1
    fields: dict[str, Any] = {}
    im_url: str | None = None
    image_key: str | None = None
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    colors: list[str] = []
    warnings: list[str] = []


class ItemEmbedded(ItemEvent):
    """embedding produced the item's vector; search indexes it."""

    topic = "item.embedded"
    version: Literal[1] = 1
    fields: dict[str, Any] = {}
    im_url: str | None = None
    vector: list[float] | None = None
    model: str | None = None
    model_version: str | None = None
    image_key: str | None = None
    content_hash: str | None = None
    colors: list[str] = []
    warnings: list[str] = []


class ItemStatus(ItemEvent):
    """An item's final outcome in one transaction: indexed, or failed at some stage."""

    topic = "item.status"
    version: Literal[1] = 1
    stage: Literal["ingestion", "image-fetch", "embedding", "search"]
    ok: bool
    error_code: int | None = None
    error_message: str | None = None
    warnings: list[str] = []
