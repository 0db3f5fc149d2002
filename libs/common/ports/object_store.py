"""The object store port (images, thumbnails, feed files)."""
from __future__ import annotations

from typing import Protocol


class ObjectStore(Protocol):
    """A flat key/value store of blobs; keys look like `app_id/images/abc.jpg`.

    Keys are relative, `/`-separated, and never contain `..` or start with `/`.
    `get` of a missing key raises `magpie.common.errors.NotFound`; `delete` is idempotent.
    """

    async def start(self) -> None:
        """Open the client and make sure the bucket or folder exists."""

    async def stop(self) -> None:
        """Release the client."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, replacing what was there."""

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`."""

    async def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key under `prefix`; returns how many were removed."""

    async def usage_bytes(self, prefix: str) -> int:
        """Total size of the objects under `prefix`."""
