"""The search service's internal API contract: index reads as JSON, shared by both ends.

Vectors travel as base64 of little-endian float32 (a recommendation's candidate pool is
hundreds of 1,280-d vectors: a quarter of the bytes of JSON numbers, and no float parsing).
Typed errors travel by class name and come back as the same class.
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from magpie.common import errors
from magpie.common.filters import AnyOf, Between, Condition, Filter, TextMatch
from magpie.common.ports.index import FacetCount, Hit, IndexPoint

PREFIX = "/internal/v1/index"


def vector_out(vector: Any) -> str:
    """A vector as base64 float32."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def vector_in(text: str) -> list[float]:
    """A base64 float32 vector as a list of floats."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").tolist()


def filter_out(flt: Filter) -> list[dict[str, Any]]:
    """A filter as a JSON list."""
    out: list[dict[str, Any]] = []
    for c in flt:
        if isinstance(c, AnyOf):
            out.append({"op": "any_of", "field": c.field, "values": list(c.values)})
        elif isinstance(c, Between):
            out.append({"op": "between", "field": c.field, "low": c.low, "high": c.high})
        else:
            out.append({"op": "text", "field": c.field, "text": c.text})
    return out


def filter_in(items: list[dict[str, Any]] | None) -> Filter:
    """A JSON filter back as conditions; a malformed one is an InvalidRequest."""
    conditions: list[Condition] = []
    for c in items or ():
        try:
            if c["op"] == "any_of":
                conditions.append(AnyOf(c["field"], tuple(c["values"])))
            elif c["op"] == "between":
                conditions.append(Between(c["field"], c["low"], c["high"]))
            elif c["op"] == "text":
                conditions.append(TextMatch(c["field"], c["text"]))
            else:
                raise errors.InvalidRequest(f"unknown filter op {c['op']!r}")
        except (KeyError, TypeError) as exc:
            raise errors.InvalidRequest(f"malformed filter condition: {exc}") from None
    return tuple(conditions)


def point_out(p: IndexPoint | None) -> dict[str, Any] | None:
    """A point as JSON."""
    if p is None:
        return None
    return {"im_name": p.im_name, "vector": vector_out(p.vector), "payload": p.payload}


def point_in(d: dict[str, Any] | None) -> IndexPoint | None:
    """A JSON point back."""
    if d is None:
        return None
    return IndexPoint(d["im_name"], vector_in(d["vector"]), d["payload"])


def hit_out(h: Hit) -> dict[str, Any]:
    """A hit as JSON."""
    return {"im_name": h.im_name, "score": h.score, "payload": h.payload,
            "vector": None if h.vector is None else vector_out(h.vector)}


def hit_in(d: dict[str, Any]) -> Hit:
    """A JSON hit back."""
    vector = d.get("vector")
    return Hit(d["im_name"], d["score"], d["payload"], None if vector is None else vector_in(vector))


def facet_out(f: FacetCount) -> dict[str, Any]:
    """A facet count as JSON."""
    return {"value": f.value, "count": f.count}


def error_out(exc: errors.MagpieError) -> dict[str, Any]:
    """A typed error as JSON."""
    return {"type": type(exc).__name__, "detail": exc.detail}


def error_in(body: dict[str, Any]) -> errors.MagpieError:
    """The typed error a JSON error names (Unavailable for an unknown name or a crash)."""
    cls = getattr(errors, str(body.get("type")), None)
    detail = str(body.get("detail") or "search service error")
    # The bare base class is the service's unexpected failure: for the caller, "try later".
    if isinstance(cls, type) and issubclass(cls, errors.MagpieError) and cls is not errors.MagpieError:
        try:
            return cls(detail)
        except TypeError:  # a class whose constructor wants more than a detail
            pass
    return errors.Unavailable(f"search service: {detail}")
