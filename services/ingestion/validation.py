"""Parsing and checking catalog rows against an application's schema (pure, no I/O)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from magpie.common.controlplane.schema_rules import MAX_IM_NAME_LEN, MAX_VALUE_LEN, Field
from magpie.common.errors import (
    BatchTooLarge,
    InvalidImageName,
    MagpieError,
    MissingImageUrl,
    NothingInserted,
    TooManyFields,
    ValueTooLong,
    WrongType,
)

MAX_BATCH = 100
MAX_PARAMS = 32  # im_name + im_url + 30 custom fields, as the reference counts them
_INDEXED = re.compile(r"^([A-Za-z0-9_]+)\[(\d{1,6})\]$")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class RawItem:
    """One item as a client sent it: every value a string, keys as given."""

    index: int
    values: dict[str, str]


@dataclass
class ValidItem:
    """An item that passed the schema: fields typed, unknown keys dropped."""

    index: int
    im_name: str
    im_url: str | None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemError:
    """Why one item of a batch was refused; the rest of the batch goes on."""

    index: int
    im_name: str | None
    error: MagpieError

    def to_wire(self) -> dict[str, Any]:
        """The reference's per-item error object."""
        return {"index": self.index, "im_name": self.im_name,
                "error_code": self.error.code, "error_message": self.error.detail}


def parse_indexed_form(pairs: Iterable[tuple[str, str]]) -> list[RawItem]:
    """Group ViSearch form fields `name[i]=value` into items ordered by i.

    Keys without an index (such as `access_key`) are not item fields and are skipped.
    """
    items: dict[int, dict[str, str]] = {}
    for key, value in pairs:
        m = _INDEXED.match(key)
        if m:
            items.setdefault(int(m.group(2)), {})[m.group(1)] = value
    return [RawItem(i, items[i]) for i in sorted(items)]


def check_batch(items: list[RawItem], limit: int = MAX_BATCH) -> None:
    """Refuse an empty batch (104) or one over the limit (103)."""
    if not items:
        raise NothingInserted()
    if len(items) > limit:
        raise BatchTooLarge()


def coerce(value: Any, f: Field) -> Any:
    """A value typed as its schema field says, or WrongType / ValueTooLong."""
    if f.type in ("string", "text"):
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_VALUE_LEN:
            raise ValueTooLong(parameter=f.name)
        return text
    if isinstance(value, bool):
        raise WrongType(field=f.name, type=f.type)
    if f.type == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT.match(value.strip()):
            number = int(value.strip())
            if -(2**63) <= number < 2**63:
                return number
        raise WrongType(field=f.name, type="int")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise WrongType(field=f.name, type="float") from None
    if not math.isfinite(number):
        raise WrongType(field=f.name, type="float")
    return number


def validate_item(index: int, values: Mapping[str, Any], schema: list[Field], *,
                  exists: bool) -> ValidItem:
    """Check one item; `exists` says whether im_name is already in the catalog.

    An existing item may come without im_url: then only its fields change.
    """
    name = values.get("im_name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_IM_NAME_LEN:
        raise InvalidImageName()
    if len(values) > MAX_PARAMS:
        raise TooManyFields()
    url = values.get("im_url")
    url = url.strip() if isinstance(url, str) else None
    if not url and not exists:
        raise MissingImageUrl()
    if url and len(url) > MAX_VALUE_LEN:
        raise ValueTooLong(parameter="im_url")
    typed: dict[str, Any] = {}
    for f in schema:
        if f.name not in values or values[f.name] is None:
            continue
        raw = values[f.name]
        if f.type in ("int", "float") and isinstance(raw, str) and not raw.strip():
            continue  # an empty cell means "no value", not a type error
        typed[f.name] = coerce(raw, f)
    return ValidItem(index=index, im_name=name, im_url=url or None, fields=typed)
