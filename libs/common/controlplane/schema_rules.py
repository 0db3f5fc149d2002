"""The seed's schema rules, as pure functions (no I/O)."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from magpie.common.errors import SchemaError

FieldType = Literal["string", "text", "int", "float"]
FIELD_TYPES: tuple[str, ...] = ("string", "text", "int", "float")
MANDATORY_FIELDS = ("im_name", "im_url")
MAX_CUSTOM_FIELDS = 30
MAX_FIELD_NAME_LEN = 32
MAX_VALUE_LEN = 5000
MAX_IM_NAME_LEN = 128
_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Field:
    """One custom schema field."""

    name: str
    type: FieldType
    searchable: bool = False


# The seed's "Recommended fields", offered as a preset.
RECOMMENDED_FIELDS: tuple[Field, ...] = (
    Field("product_url", "string"),
    Field("category", "string", searchable=True),
    Field("sub_category", "string", searchable=True),
    Field("gender", "string", searchable=True),
    Field("title", "string"),
    Field("description", "string"),
    Field("price", "float", searchable=True),
    Field("discounted_price", "float", searchable=True),
)


def validate_field_name(name: object) -> str:
    """Return `name` if it is a legal custom field name, else raise SchemaError naming it."""
    if not isinstance(name, str) or not name:
        raise SchemaError("Field name must be a non-empty string.", field=str(name))
    if len(name) > MAX_FIELD_NAME_LEN:
        raise SchemaError(
            f"Field name '{name}' is longer than {MAX_FIELD_NAME_LEN} characters.", field=name
        )
    if not _NAME.fullmatch(name):
        raise SchemaError(
            f"Field name '{name}' may contain only letters A-Z, a-z, digits 0-9 and '_'.",
            field=name,
        )
    if name in MANDATORY_FIELDS:
        raise SchemaError(f"Field '{name}' is mandatory and always present; do not declare it.", field=name)
    return name


def validate_schema(fields: Iterable[Field]) -> list[Field]:
    """Check a whole custom schema against the seed's rules; returns it as a list."""
    result: list[Field] = []
    seen: set[str] = set()
    for f in fields:
        validate_field_name(f.name)
        if f.type not in FIELD_TYPES:
            raise SchemaError(
                f"Field '{f.name}' has unknown type '{f.type}'; use one of {', '.join(FIELD_TYPES)}.",
                field=f.name,
            )
        if f.name in seen:  # names are case-sensitive: 'Price' and 'price' are two fields
            raise SchemaError(f"Field '{f.name}' is declared twice.", field=f.name)
        seen.add(f.name)
        result.append(f)
        if len(result) > MAX_CUSTOM_FIELDS:
            raise SchemaError(
                f"At most {MAX_CUSTOM_FIELDS} custom fields are allowed besides im_name and im_url; "
                f"'{f.name}' is number {len(result)}.",
                field=f.name,
            )
    return result


def removed_fields(old: Iterable[Field], new: Iterable[Field]) -> list[str]:
    """Fields whose data a schema change deletes: gone, or whose type changed."""
    new_types = {f.name: f.type for f in new}
    return [f.name for f in old if new_types.get(f.name) != f.type]
