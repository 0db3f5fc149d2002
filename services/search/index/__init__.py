"""Vector index adapters (qdrant-edge embedded, Qdrant server) and the rules they share.

Both adapters derive point ids and translate filters here, so that the same request means
the same thing on either engine (the congruence test holds them to it). The engine modules
are imported by whoever picks one; importing this package loads neither engine.
"""
from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from magpie.common.errors import IndexModelMismatch, InvalidRequest
from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf, Between, Filter, TextMatch
from magpie.common.ports.index import FacetCount

IM_NAME = "im_name"

# Payload index kind per schema field type (the names both engines use).
INDEX_KIND = {"string": "keyword", "int": "integer", "float": "float", "text": "text"}

_APP_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_WORD = re.compile(r"[^\W_]")


def point_id(app_id: str, im_name: str) -> str:
    """The point id of an item: uuid5 of `app_id:im_name`, so writes are idempotent."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app_id}:{im_name}"))


def check_app_id(app_id: str) -> str:
    """Return `app_id` if it is safe as a directory or collection name, else raise."""
    if not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise InvalidRequest(f"Invalid application id for the index: {app_id!r}.")
    return app_id


def scroll_offset(offset: str | None) -> str | None:
    """A scroll cursor as the engines take it (a point id), or InvalidRequest."""
    if offset is None:
        return None
    try:
        return str(uuid.UUID(str(offset)))
    except ValueError:
        raise InvalidRequest(f"Invalid scroll cursor: {str(offset)[:64]!r}.") from None


def check_vector(vector: Sequence[float], dim: int, app_id: str = "APP_ID") -> list[float]:
    """The vector as a list of floats; IndexModelMismatch when its length is not `dim` (no
    client sends vectors: a mismatch means the index was built with another model)."""
    values = vector.tolist() if hasattr(vector, "tolist") else [float(x) for x in vector]
    if len(values) != dim:
        raise IndexModelMismatch.dimensions(app_id, dim, len(values))
    return values


def wanted_indexes(fields: Sequence[FieldSpec]) -> dict[str, str]:
    """Payload index kind per field: every searchable field, plus `im_name` for `exclude`."""
    wanted = {f.name: INDEX_KIND[f.type] for f in fields if f.searchable}
    wanted[IM_NAME] = "keyword"
    return wanted


def facet_counts(hits: Iterable[tuple[Any, int]]) -> list[FacetCount]:
    """Facet hits most frequent first, ties by value: one order whichever engine counted."""
    counts = [FacetCount(v, int(n)) for v, n in hits if isinstance(v, (str, int))]
    return sorted(counts, key=lambda c: (-c.count, type(c.value).__name__, c.value))


@dataclass(frozen=True)
class Clause:
    """One engine-neutral test on a payload field."""

    kind: Literal["keyword", "integer", "range", "text"]
    field: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None


# A planned filter: every inner list must hold (AND), by any one of its clauses (OR).
Plan = list[list[Clause]]


def plan_filter(filter: Filter, types: Mapping[str, str]) -> Plan | None:
    """Translate a filter for the engines; None when it can match nothing.

    `types` maps field names to schema types: an int field matches its values exactly, a float
    field by a closed range per value (Qdrant never matches a float payload to an exact-match
    operand), a string or text field by exact, case-sensitive keyword match.
    """
    plan: Plan = []
    for cond in filter:
        if isinstance(cond, AnyOf):
            clauses = _any_of(cond, types.get(cond.field))
            if not clauses:
                return None
            plan.append(clauses)
        elif isinstance(cond, Between):
            # Both sides open puts no bound on the value: the condition is dropped.
            if cond.low is not None or cond.high is not None:
                plan.append([Clause("range", cond.field, low=_num(cond.low), high=_num(cond.high))])
        elif isinstance(cond, TextMatch):
            if not _WORD.search(cond.text):
                return None  # no word to match: both engines would match nothing
            plan.append([Clause("text", cond.field, values=(cond.text,))])
        else:
            raise InvalidRequest(f"Unsupported filter condition: {cond!r}.")
    return plan


def _any_of(cond: AnyOf, ftype: str | None) -> list[Clause]:
    values = cond.values
    if ftype in ("string", "text"):
        words = tuple(str(v) for v in values)
        return [Clause("keyword", cond.field, values=words)] if words else []
    if ftype == "int":
        ints = tuple(int(n) for n in map(_num, values) if float(n).is_integer())
        return [Clause("integer", cond.field, values=ints)] if ints else []
    if ftype == "float":
        return [Clause("range", cond.field, low=n, high=n) for n in map(_num, values)]
    # A field the schema does not type: strings match exactly, numbers as a closed range
    # (which matches int and float payloads alike; a float never equals a match operand).
    words = tuple(v for v in values if isinstance(v, str))
    clauses = [Clause("keyword", cond.field, values=words)] if words else []
    numbers = [_num(v) for v in values if not isinstance(v, str)]
    return clauses + [Clause("range", cond.field, low=n, high=n) for n in numbers]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"Not a number: {value!r}.") from None
    if math.isnan(number):
        raise InvalidRequest("NaN is not a filter value.")
    return int(number) if isinstance(value, int) else number


# Counts and facets without a filter ask the engines for `exact=False`: with nothing to test,
# the estimate is the exact figure, read from the indexes, whereas an exact count walks every
# point (5 ms at 100k). The congruence test checks them after deletes and overwrites.


def named(plan: Plan, names: Sequence[str]) -> Plan:
    """`plan` narrowed to the items called `names` (a keyword-index lookup)."""
    # Counting "all but these" as count(plan) - count(named(plan, these)) keeps a count on
    # the payload indexes: a must-not condition makes the engine read every point's payload
    # (5 ms per count at 100k points).
    return [*plan, [Clause("keyword", IM_NAME, values=tuple(str(n) for n in names))]]


def build_filter(models: Any, range_cls: Any, plan: Plan, exclude: Sequence[str] = ()) -> Any:
    """The engine filter for `plan` minus the `exclude`d items, or None when it is empty.

    qdrant-edge and qdrant-client name their filter models alike (`Filter`, `FieldCondition`,
    `MatchAny`, `MatchTextAny`), so one builder serves both; only the range class differs.
    """
    must = []
    for alternatives in plan:
        conds = [_condition(models, range_cls, c) for c in alternatives]
        must.append(conds[0] if len(conds) == 1 else models.Filter(should=conds))
    must_not = None
    if exclude:
        match = models.MatchAny(any=[str(n) for n in exclude])
        must_not = [models.FieldCondition(key=IM_NAME, match=match)]
    return models.Filter(must=must or None, must_not=must_not) if must or must_not else None


def _condition(models: Any, range_cls: Any, c: Clause) -> Any:
    if c.kind == "range":
        return models.FieldCondition(key=c.field, range=range_cls(gte=c.low, lte=c.high))
    if c.kind == "text":
        return models.FieldCondition(key=c.field, match=models.MatchTextAny(text_any=c.values[0]))
    return models.FieldCondition(key=c.field, match=models.MatchAny(any=list(c.values)))

