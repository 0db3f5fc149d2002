"""The filter model every search path shares: parsed from `fq`, translated by each index adapter.

A filter is a tuple of conditions that must all hold (several `fq` combine with AND).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnyOf:
    """A string field equals one of `values` exactly (case-sensitive), or a number field
    equals one of them."""

    field: str
    values: tuple[str | int | float, ...]


@dataclass(frozen=True)
class Between:
    """A number field lies in the inclusive range [low, high]; None leaves a side open."""

    field: str
    low: float | None
    high: float | None


@dataclass(frozen=True)
class TextMatch:
    """A text field matches `text` by full-text search (any of its words)."""

    field: str
    text: str


Condition = AnyOf | Between | TextMatch
Filter = tuple[Condition, ...]
