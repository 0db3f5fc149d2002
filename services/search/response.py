"""The ViSearch response envelope: results, value maps, facets, qinfo."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.ports.index import FacetCount, Hit
from magpie.search.arrange import Group
from magpie.search.handlers import SYSTEM_KEY
from magpie.search.params import SearchParams
from magpie.search.rerank import to_score

IM_URL = "im_url"


@dataclass(frozen=True)
class Facet:
    """One facet: value counts of a string field, or the range of a number field."""

    key: str
    items: tuple[FacetCount, ...] = ()
    range: tuple[float, float] | None = None


@dataclass
class Outcome:
    """What a search found: one page of a ranking of `total` results, and the extras."""

    hits: list[Hit]
    total: int
    fields: list[str] = field(default_factory=list)  # what each value_map holds
    facets: list[Facet] | None = None
    qinfo: dict[str, str] | None = None
    im_id: str | None = None
    groups: tuple[str, list[Group]] | None = None  # (group_by field, the page's groups)


def returned_fields(schema: AppSchema, params: SearchParams) -> list[str]:
    """The fields a value_map holds: `fl`, or all with `get_all_fl`; never a text field."""
    # The seed keeps text fields out of results; unknown names are skipped, not refused.
    allowed = [IM_URL, *(f.name for f in schema.fields if f.type != "text")]
    if params.get_all_fl:
        return allowed
    return [name for name in params.fl if name in allowed]


def format_value(value: Any) -> str:
    """A value_map value: strings as stored, floats with six decimals as the reference does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def value_map(payload: dict[str, Any], fields: Sequence[str]) -> dict[str, str]:
    """The requested fields an item has, as strings."""
    system = payload.get(SYSTEM_KEY) or {}
    out: dict[str, str] = {}
    for name in fields:
        value = system.get(IM_URL) if name == IM_URL else payload.get(name)
        if value is not None:
            out[name] = format_value(value)
    return out


def qinfo_of(payload: dict[str, Any], fields: Sequence[str]) -> dict[str, str]:
    """The query item's information: its im_url and the requested fields."""
    return value_map(payload, [IM_URL, *(f for f in fields if f != IM_URL)])


def result_item(hit: Hit, fields: Sequence[str], with_score: bool) -> dict[str, Any]:
    """One entry of `result`."""
    item: dict[str, Any] = {"im_name": hit.im_name}
    if with_score:
        item["score"] = round(to_score(hit.score), 6)
    item["value_map"] = value_map(hit.payload, fields)
    return item


def facet_body(facet: Facet, show_count: bool) -> dict[str, Any]:
    """One entry of `facets`: items by count (strings) or a min/max range (numbers)."""
    if facet.range is not None:
        return {"key": facet.key, "range": {"min": facet.range[0], "max": facet.range[1]}}
    items = [{"value": str(c.value), **({"count": c.count} if show_count else {})}
             for c in facet.items]
    return {"key": facet.key, "items": items}


def envelope(method: str, params: SearchParams, outcome: Outcome, reqid: str) -> dict[str, Any]:
    """The whole answer, keys in the reference's order."""
    body: dict[str, Any] = {
        "status": "OK", "method": method, "error": [], "page": params.page,
        "limit": params.limit, "total": outcome.total,
        "result": [result_item(h, outcome.fields, params.score) for h in outcome.hits],
    }
    if outcome.groups is not None:
        key, groups = outcome.groups
        body["group_by_key"] = key
        body["group_results"] = [
            {"group_by_value": format_value(g.value),
             "result": [result_item(h, outcome.fields, params.score) for h in g.hits]}
            for g in groups]
    if outcome.facets is not None:
        body["facets"] = [facet_body(f, params.facets_show_count) for f in outcome.facets]
    if outcome.qinfo is not None:
        body["qinfo"] = outcome.qinfo
    if outcome.im_id is not None:
        body["im_id"] = outcome.im_id
    body["reqid"] = reqid
    return body
