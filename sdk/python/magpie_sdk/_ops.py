"""Every API call as data: how to build its request and how to read its answer.

Pure functions, no I/O: the sync and async clients send the same `Call`s, so each call is
written once and its request building is unit-testable.
"""
from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

from magpie_sdk.types import (
    App,
    AppInfo,
    Field,
    InsertResult,
    Key,
    Schema,
    SearchOptions,
    SearchResult,
    TrackResult,
    TransactionStatus,
)

T = TypeVar("T")
# keys: HTTP Basic access:secret. search: Basic when a secret is set, else the app key as
# `access_key`. tracking: the app key as `code`. admin: the session's bearer token.
Auth = Literal["keys", "search", "tracking", "admin", "none"]
# How the answer's errors look: legacy ViSearch envelope, /v1 JSON, tracking, admin problem.
Family = Literal["legacy", "v1", "tracking", "pixel", "admin"]
MAX_BATCH = 100
FileInput = str | Path | bytes


@dataclass(frozen=True)
class Request:
    """One HTTP request, before authentication."""

    method: str
    path: str
    auth: Auth
    family: Family
    idempotent: bool
    params: list[tuple[str, str]] = field(default_factory=list)
    data: list[tuple[str, str]] | None = None
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and the function that turns its (successful) decoded answer into T."""

    request: Request
    parse: Callable[[Any], T]


def _text(value: Any) -> str:
    """A form value as the server reads it (booleans as the SDKs send them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- Data API ----------------------------------------------------------------------------
def indexed_form(items: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Items as the Data API's form: `im_name[i]`, `im_url[i]`, `<field>[i]` (None left out)."""
    return [(f"{k}[{i}]", _text(v)) for i, item in enumerate(items)
            for k, v in item.items() if v is not None]


def _batch(items: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if len(items) > MAX_BATCH:
        # The server refuses the whole call with code 103; say so before sending 100+ rows.
        from magpie_sdk.errors import InvalidRequestError
        raise InvalidRequestError(f"Exceeded maximum insert batch size of {MAX_BATCH}; use "
                                  "bulk_insert for more.", code=103, status_code=400, method="insert")
    return items


def insert(items: Iterable[Mapping[str, Any]]) -> Call[InsertResult]:
    """POST /insert: up to 100 items; idempotent (re-inserting an im_name updates it)."""
    form = indexed_form(_batch(list(items)))
    return Call(Request("POST", "/insert", "keys", "legacy", True, data=form), InsertResult.from_wire)


def remove(im_names: Iterable[str]) -> Call[InsertResult]:
    """POST /remove: items by im_name (not retried after it reached the server: a second
    attempt would report the removed names as unknown)."""
    form = [(f"im_name[{i}]", n) for i, n in enumerate(im_names)]
    return Call(Request("POST", "/remove", "keys", "legacy", False, data=form), InsertResult.from_wire)


def insert_status(trans_id: int, error_page: int = 1, error_limit: int = 10) -> Call[TransactionStatus]:
    """GET /insert/status/{trans_id}."""
    params = [("error_page", str(error_page)), ("error_limit", str(error_limit))]
    return Call(Request("GET", f"/insert/status/{trans_id}", "keys", "legacy", True, params),
                TransactionStatus.from_wire)


def insert_items(items: Iterable[Mapping[str, Any]]) -> Call[InsertResult]:
    """POST /v1/items: up to 100 items as JSON (values keep their types)."""
    body = {"items": [dict(i) for i in _batch(list(items))]}
    return Call(Request("POST", "/v1/items", "keys", "v1", True, json=body), InsertResult.from_wire)


def remove_items(im_names: Iterable[str]) -> Call[InsertResult]:
    """POST /v1/items/remove."""
    return Call(Request("POST", "/v1/items/remove", "keys", "v1", False,
                        json={"im_names": list(im_names)}), InsertResult.from_wire)


def transaction(trans_id: int, error_page: int = 1, error_limit: int = 10) -> Call[TransactionStatus]:
    """GET /v1/transactions/{trans_id}."""
    params = [("error_page", str(error_page)), ("error_limit", str(error_limit))]
    return Call(Request("GET", f"/v1/transactions/{trans_id}", "keys", "v1", True, params),
                TransactionStatus.from_wire)


def transactions(limit: int = 50) -> Call[list[dict[str, Any]]]:
    """GET /v1/transactions: the latest, newest first."""
    return Call(Request("GET", "/v1/transactions", "keys", "v1", True, [("limit", str(limit))]),
                lambda b: b["result"])


def get_item(im_name: str) -> Call[dict[str, Any]]:
    """GET /v1/items/{im_name}: im_url, model, colours and every field."""
    from urllib.parse import quote
    return Call(Request("GET", f"/v1/items/{quote(im_name, safe='')}", "keys", "v1", True),
                lambda b: b["result"][0])


def app_info() -> Call[AppInfo]:
    """GET /v1/app."""
    return Call(Request("GET", "/v1/app", "search", "v1", True), AppInfo.from_wire)


def report(date_from: str | None = None, date_to: str | None = None, solution: str = "",
           top: int = 10) -> Call[dict[str, Any]]:
    """GET /v1/analytics/report (dates as YYYY-MM-DD)."""
    params = [("solution", solution), ("top", str(top))]
    params += [(k, v) for k, v in (("from", date_from), ("to", date_to)) if v]
    return Call(Request("GET", "/v1/analytics/report", "keys", "v1", True, params), lambda b: b)


def usage(date_from: str | None = None, date_to: str | None = None) -> Call[dict[str, Any]]:
    """GET /v1/usage."""
    params = [(k, v) for k, v in (("from", date_from), ("to", date_to)) if v]
    return Call(Request("GET", "/v1/usage", "keys", "v1", True, params), lambda b: b)


# --- search ------------------------------------------------------------------------------
def search_params(options: SearchOptions, uid: str | None = None,
                  sid: str | None = None) -> list[tuple[str, str]]:
    """The common search parameters as repeated query pairs (`fl`, `fq` repeat)."""
    pairs: list[tuple[str, str]] = []
    for key, value in options.items():
        if value is None:
            continue
        if key == "fl":
            pairs += [("fl", str(f)) for f in cast("list[str]", value)]
        elif key == "fq":
            fq = cast("Mapping[str, str] | list[str]", value)
            conditions = fq.items() if isinstance(fq, Mapping) else (v.split(":", 1) for v in fq)
            pairs += [("fq", f"{k}:{v}") for k, v in conditions]
        elif key == "facets":
            facets = cast("str | list[str]", value)
            pairs.append(("facets", facets if isinstance(facets, str) else ",".join(facets)))
        else:
            pairs.append((key, _text(value)))
    pairs += [(k, v) for k, v in (("va_uid", uid), ("va_sid", sid)) if v]
    return pairs


def search(im_name: str, options: SearchOptions, uid: str | None = None,
           sid: str | None = None) -> Call[SearchResult]:
    """GET /search: items like the indexed item `im_name`."""
    params = [("im_name", im_name), *search_params(options, uid, sid)]
    return Call(Request("GET", "/search", "search", "legacy", True, params), SearchResult.from_wire)


def recommendation(im_name: str, options: SearchOptions, uid: str | None = None,
                   sid: str | None = None) -> Call[SearchResult]:
    """GET /recommendation: similar items without near-duplicates, diversified."""
    params = [("im_name", im_name), *search_params(options, uid, sid)]
    return Call(Request("GET", "/recommendation", "search", "legacy", True, params),
                SearchResult.from_wire)


def colorsearch(colors: str | Iterable[str], options: SearchOptions, uid: str | None = None,
                sid: str | None = None) -> Call[SearchResult]:
    """GET /colorsearch: `RRGGBB`, or several `RRGGBB:weight` mixed."""
    colors = [colors] if isinstance(colors, str) else list(colors)
    params = [("color", c.lstrip("#")) for c in colors] + search_params(options, uid, sid)
    return Call(Request("GET", "/colorsearch", "search", "legacy", True, params),
                SearchResult.from_wire)


def read_image(image: FileInput) -> tuple[str, bytes, str]:
    """(filename, bytes, content type) of an image given as a path or as bytes."""
    if isinstance(image, bytes):
        return "image", image, "application/octet-stream"
    path = Path(image)
    return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def uploadsearch(options: SearchOptions, *, image: FileInput | None = None, im_url: str | None = None,
                 im_id: str | None = None, box: tuple[int, int, int, int] | None = None,
                 uid: str | None = None, sid: str | None = None) -> Call[SearchResult]:
    """POST /uploadsearch by an image file (path or bytes), an `im_url` or an earlier `im_id`."""
    if image is None and im_url is None and im_id is None:
        raise ValueError("uploadsearch needs image, im_url or im_id")
    form = [(k, v) for k, v in (("im_url", im_url), ("im_id", im_id)) if v]
    if box is not None:
        form.append(("box", ",".join(str(int(v)) for v in box)))
    form += search_params(options, uid, sid)
    files = {"image": read_image(image)} if image is not None else None
    return Call(Request("POST", "/uploadsearch", "search", "legacy", True, data=form, files=files),
                SearchResult.from_wire)


# --- tracking ----------------------------------------------------------------------------
# Python names of the reference's camelCase event fields.
EVENT_FIELDS = {"query_id": "queryId", "product_url": "productUrl", "im_url": "imUrl",
                "from_req_id": "fromReqId", "trans_id": "transId"}


def event(action: str, fields: Mapping[str, Any], uid: str | None, sid: str | None) -> dict[str, Any]:
    """An event in the wire's names. `ts` is set here, so a retried batch carries the same
    events and the server's content-hash event ids deduplicate it."""
    body = {EVENT_FIELDS.get(k, k): v for k, v in fields.items() if v is not None}
    body["action"] = action
    body.setdefault("ts", int(time.time() * 1000))
    for key, value in (("uid", uid), ("sid", sid)):
        if value and key not in body:
            body[key] = value
    return body


def track_batch(events: list[dict[str, Any]], sdk: str, version: str) -> Call[TrackResult]:
    """POST /v3/events: up to 1,000 events (idempotent: event ids are content hashes)."""
    body = {"sdk": sdk, "v": version, "events": events}
    return Call(Request("POST", "/v3/events", "tracking", "tracking", True, json=body),
                TrackResult.from_wire)


def track_pixel(ev: dict[str, Any]) -> Call[bool]:
    """GET /v3/__va.gif: one event; the answer is always a GIF, refusal in its headers."""
    params = [(k, _text(v)) for k, v in ev.items()]
    return Call(Request("GET", "/v3/__va.gif", "tracking", "pixel", True, params), lambda _: True)


# --- admin -------------------------------------------------------------------------------
def _admin(method: str, path: str, parse: Callable[[Any], T], *, json: Any = None,
           idempotent: bool | None = None, params: list[tuple[str, str]] | None = None) -> Call[T]:
    idem = method in ("GET", "PUT", "DELETE") if idempotent is None else idempotent
    return Call(Request(method, f"/admin/v1{path}", "admin", "admin", idem, params or [], json=json), parse)


def sign_in(email: str, password: str) -> Call[dict[str, Any]]:
    """POST /admin/v1/sessions: a bearer token."""
    return Call(Request("POST", "/admin/v1/sessions", "none", "admin", True,
                        json={"email": email, "password": password}), lambda b: b)


def apps() -> Call[list[App]]:
    """GET /admin/v1/apps."""
    return _admin("GET", "/apps", lambda b: [App.from_wire(a) for a in b])


def create_app(name: str, image_type: str = "general") -> Call[App]:
    """POST /admin/v1/apps: the answer holds the secret key, once."""
    return _admin("POST", "/apps", App.from_wire, json={"name": name, "image_type": image_type})


def get_app(app_id: str) -> Call[App]:
    """GET /admin/v1/apps/{app_id}."""
    return _admin("GET", f"/apps/{app_id}", App.from_wire)


def rename_app(app_id: str, name: str) -> Call[App]:
    """PATCH /admin/v1/apps/{app_id}."""
    return _admin("PATCH", f"/apps/{app_id}", App.from_wire, json={"name": name}, idempotent=True)


def delete_app(app_id: str) -> Call[None]:
    """DELETE /admin/v1/apps/{app_id} (not repeated once sent)."""
    return _admin("DELETE", f"/apps/{app_id}", lambda _: None, idempotent=False)


def keys(app_id: str) -> Call[list[Key]]:
    """GET /admin/v1/apps/{app_id}/keys."""
    return _admin("GET", f"/apps/{app_id}/keys", lambda b: [Key.from_wire(k) for k in b])


def create_key(app_id: str, label: str = "") -> Call[Key]:
    """POST /admin/v1/apps/{app_id}/keys."""
    return _admin("POST", f"/apps/{app_id}/keys", Key.from_wire, json={"label": label})


def revoke_key(app_id: str, access_key: str) -> Call[Key]:
    """DELETE /admin/v1/apps/{app_id}/keys/{access_key}."""
    return _admin("DELETE", f"/apps/{app_id}/keys/{access_key}", Key.from_wire)


def get_schema(app_id: str) -> Call[Schema]:
    """GET /admin/v1/apps/{app_id}/schema."""
    return _admin("GET", f"/apps/{app_id}/schema", Schema.from_wire)


def _field(f: Field | Mapping[str, Any]) -> dict[str, Any]:
    return f.to_wire() if isinstance(f, Field) else dict(f)


def set_schema(app_id: str, fields: Iterable[Field | Mapping[str, Any]]) -> Call[Schema]:
    """PUT /admin/v1/apps/{app_id}/schema."""
    return _admin("PUT", f"/apps/{app_id}/schema", Schema.from_wire,
                  json={"fields": [_field(f) for f in fields]})


def add_field(app_id: str, f: Field | Mapping[str, Any]) -> Call[Schema]:
    """POST /admin/v1/apps/{app_id}/schema/fields."""
    return _admin("POST", f"/apps/{app_id}/schema/fields", Schema.from_wire, json=_field(f))


def remove_field(app_id: str, name: str) -> Call[Schema]:
    """DELETE /admin/v1/apps/{app_id}/schema/fields/{name}."""
    return _admin("DELETE", f"/apps/{app_id}/schema/fields/{name}", Schema.from_wire, idempotent=False)


def schema_preset() -> Call[list[Field]]:
    """GET /admin/v1/schema/preset."""
    return _admin("GET", "/schema/preset", lambda b: [Field(f["name"], f["type"], f["searchable"]) for f in b])


def admin_report(app_id: str, date_from: str | None = None, date_to: str | None = None,
                 solution: str = "", top: int = 10) -> Call[dict[str, Any]]:
    """GET /admin/v1/apps/{app_id}/analytics/report."""
    params = [("solution", solution), ("top", str(top))]
    params += [(k, v) for k, v in (("from", date_from), ("to", date_to)) if v]
    return _admin("GET", f"/apps/{app_id}/analytics/report", lambda b: b, params=params)


def me() -> Call[dict[str, Any]]:
    """GET /admin/v1/me."""
    return _admin("GET", "/me", lambda b: b)
