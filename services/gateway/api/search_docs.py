"""OpenAPI descriptions of the search routes' parameters.

The routes read their parameters from the raw query string and form (repeated keys, the
SDKs' `True`/`False`, double-encoded `im_url`), so FastAPI cannot infer them; these keep
the OpenAPI document true to what the routes accept.
"""
from __future__ import annotations

from typing import Any


def _q(name: str, schema: dict[str, Any], description: str, *, required: bool = False,
       repeat: bool = False) -> dict[str, Any]:
    if repeat:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description, **({"style": "form", "explode": True} if repeat else {})}


_STR, _INT, _BOOL, _NUM = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}

COMMON = [
    _q("access_key", _STR, "Search-only app key (browsers); or send HTTP Basic access_key:secret_key."),
    _q("page", _INT, "1-based page (default 1)."),
    _q("limit", _INT, "Results per page (default 10); page × limit ≤ 1000."),
    _q("fl", _STR, "A field to return in value_map (repeat).", repeat=True),
    _q("get_all_fl", _BOOL, "Return every non-text field."),
    _q("fq", _STR, "Filter field:value (repeat; all must hold). string: exact, `a OR b`, "
       "\"quoted\"; int/float: value or min,max; text: full-text, any word, forgiving a "
       "typo or two (one edit for words of 3-5 letters, two beyond).", repeat=True),
    _q("score", _BOOL, "Add each result's score (0..1, higher is closer)."),
    _q("score_min", _NUM, "Lowest score to return (default 0)."),
    _q("score_max", _NUM, "Highest score to return (default 1)."),
    _q("qinfo", _BOOL, "Add the query item's metadata."),
    _q("facets", _STR, "Comma-separated searchable fields, or *."),
    _q("facets_limit", _INT, "Values per string facet."),
    _q("facets_show_count", _BOOL, "Show value counts."),
    _q("dedup", _BOOL, "Drop results whose score is within dedup_score_threshold of the previous one."),
    _q("dedup_score_threshold", _NUM, "Threshold for dedup."),
    _q("sort_by", _STR, "field:asc or field:desc (a string, int or float field): the results "
       "paging reaches, re-ordered by the field; equal values keep similarity order, items "
       "without the field come last. Not for recommendation."),
    _q("group_by", _STR, "A string, int or float field: results grouped by its value "
       "(group_by_key, group_results); groups ordered by their best result; page and limit "
       "count groups. Not for recommendation."),
    _q("group_limit", _INT, "Results per group (default 1, at most 100)."),
    _q("va_uid", _STR, "Analytics user id, joined with tracked events."),
    _q("va_sid", _STR, "Analytics session id."),
]
IM_NAME = [_q("im_name", _STR, "The indexed item to start from.", required=True)]
UPLOAD = [
    _q("im_url", _STR, "URL of the query image (instead of an uploaded `image`)."),
    _q("im_id", _STR, "An earlier upload search's im_id, to page without uploading again (wins)."),
    _q("box", _STR, "Region x1,y1,x2,y2 of the query image (origin top-left)."),
    _q("detection", _STR, "Not offered (no object detector): empty is accepted, any other value "
       "is refused, as are detection_limit, detection_sensitivity and point; use box."),
]
COLOR = [_q("color", _STR, "RRGGBB, or RRGGBB:weight (repeat to mix colours).", required=True,
            repeat=True)]
UPLOAD_BODY = {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "image": {"type": "string", "format": "binary", "description": "Query image, at most 10 MB."},
    "im_url": {"type": "string"}, "im_id": {"type": "string"}, "box": {"type": "string"}}}}}}


def docs(params: list[dict[str, Any]], body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `openapi_extra` of a search route."""
    extra: dict[str, Any] = {"parameters": params + COMMON}
    if body:
        extra["requestBody"] = body
    return extra
