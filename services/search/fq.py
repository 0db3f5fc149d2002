"""The `fq` filter language of the ViSearch API, parsed into the shared filter model.

Per field type (from the product brief):
- string: exact, case-sensitive; several values joined by ` OR `; a value with special
  characters in double quotes (`"Women's shoes" OR "Men's shoes"`; `\\"` and `\\\\` escape).
- int, float: an exact value, or an inclusive `min,max` range; one side may be left empty
  for an open range (`10,` or `,99.5`); several exact values may be joined by ` OR `.
- text: full-text match of any word of the value.
Several `fq` combine with AND. Only searchable fields of the schema may filter.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable

from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import InvalidRequest
from magpie.common.filters import AnyOf, Between, Condition, Filter, TextMatch

_OR = re.compile(r"\s+OR\s+")
_INT = re.compile(r"^[+-]?\d+$")


class FilterError(InvalidRequest):
    """An `fq` that cannot be applied; the message says which and why."""


def parse_filters(fqs: Iterable[str], schema: Iterable[Field]) -> Filter:
    """Parse every `fq` parameter against the schema; all must hold."""
    fields = {f.name: f for f in schema}
    return tuple(parse_one(fq, fields) for fq in fqs if fq.strip())


def parse_one(fq: str, fields: dict[str, Field]) -> Condition:
    """One `field:value` filter."""
    name, sep, value = fq.partition(":")
    name = name.strip()
    if not sep or not name:
        raise FilterError(f"fq '{fq}' must look like field:value.")
    field = fields.get(name)
    if field is None:
        raise FilterError(f"fq '{fq}': {name} is not a field of the schema.")
    if not field.searchable:
        raise FilterError(f"fq '{fq}': {name} is not searchable; mark it searchable in the schema.")
    if not value.strip():
        raise FilterError(f"fq '{fq}': the value is empty.")
    if field.type == "string":
        return AnyOf(name, tuple(split_values(value, fq)))
    if field.type == "text":
        return TextMatch(name, value.strip())
    return _numeric(name, field.type, value, fq)


def split_values(value: str, fq: str) -> list[str]:
    """Split `a OR "b c" OR d` into exact values, honouring quotes and escapes."""
    values: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            raise FilterError(f"fq '{fq}': a value is missing (around an OR).")
        if value[i] == '"':
            out, i = [], i + 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            if i >= n:
                raise FilterError(f"fq '{fq}': a double quote is not closed.")
            values.append("".join(out))
            i += 1
            rest = value[i:]
            m = re.match(r"\s*$", rest)
            if m:
                return values
            m = re.match(r"\s+OR\s+", rest)
            if not m:
                raise FilterError(f"fq '{fq}': expected OR after a quoted value.")
            i += m.end()
        else:
            m = _OR.search(value, i)
            end = m.start() if m else n
            term = value[i:end].strip()
            if not term or term == "OR" or term.startswith("OR ") or term.endswith(" OR"):
                raise FilterError(f"fq '{fq}': a value is missing (around an OR).")
            if '"' in term:
                raise FilterError(f"fq '{fq}': quote the whole value: \"{term.strip(chr(34))}\".")
            values.append(term)
            if m is None:
                return values
            i = m.end()


def _number(text: str, kind: str, name: str, fq: str) -> int | float:
    text = text.strip()
    if kind == "int":
        if not _INT.match(text):
            raise FilterError(f"fq '{fq}': {name} is an int field; '{text}' is not an integer.")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        raise FilterError(f"fq '{fq}': {name} is a float field; '{text}' is not a number.") from None
    if not math.isfinite(number):
        raise FilterError(f"fq '{fq}': {name} needs a finite number.")
    return number


def _numeric(name: str, kind: str, value: str, fq: str) -> Condition:
    if "," in value:
        low_text, _, high_text = value.partition(",")
        if "," in high_text:
            raise FilterError(f"fq '{fq}': a range is min,max with one comma.")
        low = _number(low_text, kind, name, fq) if low_text.strip() else None
        high = _number(high_text, kind, name, fq) if high_text.strip() else None
        if low is None and high is None:
            raise FilterError(f"fq '{fq}': a range needs at least one bound.")
        if low is not None and high is not None and low > high:
            raise FilterError(f"fq '{fq}': the range's min is above its max.")
        return Between(name, low, high)
    return AnyOf(name, tuple(_number(v, kind, name, fq) for v in _OR.split(value.strip())))
