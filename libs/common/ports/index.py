"""The vector index port: one collection per application, vectors plus typed payload."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from magpie.common.events.control import FieldSpec
from magpie.common.filters import Filter


@dataclass
class IndexPoint:
    """One indexed item: its vector and its payload (schema fields plus system fields)."""

    im_name: str
    vector: list[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """A search result: the item, its similarity (higher is closer) and its payload."""

    im_name: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None  # only when the search asked for vectors


@dataclass(frozen=True)
class FacetCount:
    """How many points hold one value of a field."""

    value: str | int
    count: int


class ScrollPage(NamedTuple):
    """One page of a scroll: points in id order, and the cursor of the next page (None: done)."""

    points: list[IndexPoint]
    next_offset: str | None


class VectorIndex(Protocol):
    """Stores and searches vectors per application.

    Point ids are derived from `im_name` (uuid5), so upserts and deletes are idempotent.
    Payload keys are the schema's field names plus `im_name`; fields whose spec is searchable
    get a payload index of their type (keyword, integer, float, full-text).
    """

    async def start(self) -> None:
        """Open the engine or client."""

    async def stop(self) -> None:
        """Flush and close."""

    async def ensure_collection(self, app_id: str, dim: int, fields: Sequence[FieldSpec]) -> None:
        """Create the application's collection if missing and (re)build its payload indexes."""

    async def upsert(self, app_id: str, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points."""

    async def set_payload(self, app_id: str, im_name: str, payload: dict[str, Any]) -> bool:
        """Merge `payload` into an existing point; False when the point does not exist."""

    async def delete(self, app_id: str, im_names: Sequence[str]) -> None:
        """Remove points; missing ones are ignored."""

    async def delete_payload_keys(self, app_id: str, keys: Sequence[str]) -> None:
        """Remove payload keys from every point (a schema field was removed)."""

    async def drop(self, app_id: str) -> None:
        """Delete the application's whole collection; a missing one is ignored."""

    async def get(self, app_id: str, im_name: str) -> IndexPoint | None:
        """One point with its vector, or None."""

    async def search(
        self, app_id: str, vector: Sequence[float], *, limit: int, offset: int = 0,
        filter: Filter = (), exclude: Sequence[str] = (), score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The nearest points (cosine), best first, that satisfy every filter condition and
        score at least `score_threshold`; `with_vectors` fills `Hit.vector`."""

    async def count(self, app_id: str, filter: Filter = (), exclude: Sequence[str] = ()) -> int:
        """How many points satisfy the filter."""

    async def facet(
        self, app_id: str, key: str, *, limit: int = 10, filter: Filter = (),
        exclude: Sequence[str] = (),
    ) -> list[FacetCount]:
        """Exact value counts of a keyword or integer field over the points that satisfy the
        filter: most frequent first, ties by value."""

    async def value_range(
        self, app_id: str, key: str, filter: Filter = (), exclude: Sequence[str] = (),
    ) -> tuple[float, float] | None:
        """The smallest and largest value of a numeric field over the points that satisfy the
        filter; None when none holds one."""

    async def scroll(
        self, app_id: str, *, limit: int = 256, offset: str | None = None, filter: Filter = (),
        fields: Sequence[str] | None = None, with_vectors: bool = False,
    ) -> ScrollPage:
        """Every point that satisfies the filter, a page at a time in point-id order.

        `offset` is the `next_offset` of the previous page (None: the first page), an opaque
        cursor that stays valid while points are written. `fields` narrows each payload to
        those keys (None: all); vectors are empty unless `with_vectors`. A missing
        application reads as empty."""


class RebuildableIndex(Protocol):
    """An index that can move an application to vectors of another dimension online."""

    async def rebuild(
        self, app_id: str, dim: int,
        convert: Callable[[list[IndexPoint]], Awaitable[list[IndexPoint]]], *, page: int = 512,
        before_swap: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Replace every point by what `convert` makes of it (vectors of `dim` dimensions),
        pages of points with their vectors in, points out; queries and writes go on against
        the old points until one swap, made right after `before_swap` (writes may wait for
        the catch-up on what they changed meanwhile); on any error (theirs too) nothing
        changes. Points the index holds after."""
