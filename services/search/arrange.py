"""`sort_by` and `group_by`: a ranking window re-ordered by a field, or grouped by its value.

Both work on the window of results paging can reach (at most MAX_RESULTS, after the filters,
the score bounds and dedup), so every page of one query comes from the same arrangement.
Sorting is stable: items with equal values keep their similarity order; items without the
field come last either way. Groups are ordered by their best item, hold their items best
first (at most `group_limit`), and items without the field belong to no group.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from magpie.common.ports.index import Hit


@dataclass(frozen=True)
class SortBy:
    """Order results by a field's value."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class Group:
    """The results sharing one value of the `group_by` field, best first."""

    value: Any
    hits: list[Hit]


def sort_hits(hits: Sequence[Hit], sort: SortBy) -> list[Hit]:
    """`hits` ordered by `sort.field`, ties in their given order, missing values last."""
    present = [h for h in hits if _value(h, sort.field) is not None]
    missing = [h for h in hits if _value(h, sort.field) is None]
    # Python's sort is stable with reverse=True too: equal values keep their order. Numbers
    # and strings never meet in one comparison (a field whose type changed may hold both).
    present.sort(key=lambda h: (isinstance(_value(h, sort.field), str), _value(h, sort.field)),
                 reverse=sort.descending)
    return present + missing


def group_hits(hits: Sequence[Hit], name: str, limit: int) -> list[Group]:
    """The hits grouped by their value of `name`, groups in order of their first hit."""
    groups: dict[Any, list[Hit]] = {}
    for hit in hits:
        value = _value(hit, name)
        if value is None:
            continue
        members = groups.setdefault(value, [])
        if len(members) < limit:
            members.append(hit)
    return [Group(value, members) for value, members in groups.items()]


def _value(hit: Hit, name: str) -> Any:
    value = hit.payload.get(name)
    # Lists or maps cannot be ordered against scalars: such an item counts as missing.
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
