"""Tracking API (ViSenze Analytics v3 compatible): the pixel `GET /v3/__va.gif`, the batch
`POST /v3/events`, and the legacy pixel `GET /__aq.gif`. Thin: validation is in
magpie.analytics.tracking; accepted events go on the bus as `event.tracked`.

`code` is an application's app key, optionally `app_key:placement_id` as the search SDK sends.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from magpie.analytics.tracking import MAX_BATCH, from_legacy_pixel, validate_event, validate_item
from magpie.common.errors import InvalidCredentials, InvalidRequest, LimitExceeded, MagpieError
from magpie.common.events.analytics import EventTracked
from magpie.gateway.api.deps import get_container
from magpie.gateway.controlplane import access

log = logging.getLogger(__name__)
router = APIRouter(tags=["tracking"])
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_BODY_BYTES = 4 * 1024 * 1024
CODE_TTL_S = 10.0
PUBLISH_SLICE = 100
CODE_CACHE_SIZE = 10_000
_GIF_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"image/gif": {}},
                                                          "description": "A 1×1 transparent GIF."}}


def now_ms() -> int:
    """The server clock in ms since the epoch."""
    return int(time.time() * 1000)


class CodeCache:
    """App key → app_id for `CODE_TTL_S` seconds. A pixel carries one event, so one database
    read a hit would be most of its cost; the price is that a revoked key keeps tracking for up
    to the TTL. Only live keys are kept, at most `CODE_CACHE_SIZE` (emptied when full)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, str]] = {}

    async def app_id(self, db: Any, key: str) -> str:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        app_id = (await access.by_app_key(db, key)).app_id
        if len(self._entries) >= CODE_CACHE_SIZE:
            self._entries.clear()
        self._entries[key] = (now + CODE_TTL_S, app_id)
        return app_id


def code_cache(request: Request) -> CodeCache:
    """The application's cache (one per app instance: tests run several in one process)."""
    state = request.app.state
    cache = getattr(state, "tracking_codes", None)
    if cache is None:
        cache = state.tracking_codes = CodeCache()
    return cache


async def resolve_code(request: Request, db: Any, code: str | None) -> tuple[str, str]:
    """(app_id, placement) of a tracker `code`; InvalidCredentials unless it is a live app key."""
    key, _, placement = (code or "").partition(":")
    if not key:
        raise InvalidCredentials("code (the app key) is required.")
    return await code_cache(request).app_id(db, key), placement


async def publish(request: Request, events: list[EventTracked]) -> None:
    """Put accepted events on the bus (the analytics service stores them)."""
    bus = get_container(request).bus
    for event in events:
        await bus.publish(event)


def gif(outcome: str, reason: str = "") -> Response:
    """The pixel's answer, whatever happened: a pixel never breaks a page. Why it was refused
    travels in headers, for whoever debugs an integration."""
    headers = {"Cache-Control": "no-store, max-age=0", "X-Tracking": outcome}
    if reason:
        # Reasons may quote the input: only printable ASCII may go into a header.
        headers["X-Tracking-Error"] = re.sub(r"[^\x20-\x7e]", "?", reason)[:300]
    return Response(GIF, media_type="image/gif", headers=headers)


async def track_one(request: Request, db: Any, code: str | None, raw: dict[str, Any]) -> Response:
    """Validate and publish one pixel event; always a GIF."""
    try:
        app_id, placement = await resolve_code(request, db, code)
        event, errors = validate_event(raw, app_id=app_id, now_ms=now_ms(), placement=placement)
        if event is None:
            return gif("rejected", "; ".join(e.detail for e in errors))
        await publish(request, [event])
        return gif("accepted")
    except MagpieError as exc:
        return gif("rejected", exc.detail)
    except Exception:  # noqa: BLE001 - the page must still get its pixel
        log.exception("tracking pixel failed")
        return gif("rejected", "internal error")


def control_plane(request: Request) -> Any:
    """The control-plane session factory, read straight from the container: the `Db`
    dependency is a chain of two sync functions, which FastAPI runs in its thread pool, two
    thread hops that cost a pixel more than its own validation."""
    return get_container(request).db


@router.get("/v3/__va.gif", name="__va.gif", response_class=Response, responses=_GIF_RESPONSES)
async def va_pixel(request: Request) -> Response:
    """Track one event from query parameters (`code` = app key, `action`, `queryId`, `pid`,
    `pos`, `uid`, `sid`, `ts`, ...). Always answers a 1×1 GIF; only valid events are recorded
    (header `X-Tracking: accepted|rejected`, with `X-Tracking-Error` saying why)."""
    params = dict(request.query_params)
    return await track_one(request, control_plane(request), params.pop("code", None), params)


@router.get("/__aq.gif", name="__aq.gif", response_class=Response, responses=_GIF_RESPONSES)
async def legacy_pixel(request: Request) -> Response:
    """Legacy ViSearch click pixel: `cid` = app key, `reqid`, `im_name`, `action` (default
    click = product_click), `cuid`. Always answers a 1×1 GIF."""
    params = dict(request.query_params)
    return await track_one(request, control_plane(request), params.get("cid"), from_legacy_pixel(params))


def _answer(reqid: str, status_code: int, err: MagpieError) -> JSONResponse:
    return JSONResponse({"status": "fail", "reqid": reqid, "result": [], "error": [err.to_item()]},
                        status_code=status_code)


async def _batch_body(request: Request) -> dict[str, Any]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise LimitExceeded(f"The body exceeds {MAX_BODY_BYTES} bytes.")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise LimitExceeded(f"The body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body must be JSON: {\"events\": [...]}.") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise InvalidRequest("The body must be JSON: {\"events\": [...]}.")
    if len(body["events"]) > MAX_BATCH:
        raise LimitExceeded(f"At most {MAX_BATCH} events per request.")
    return body


@router.post("/v3/events", name="events")
async def track_events(request: Request, code: str | None = None) -> JSONResponse:
    """Track up to 1000 events: body `{"uid", "sid", "sdk", "v", "events": [{...}]}` (top-level
    uid/sid/sdk/v fill events that lack them). Answers `{status, reqid, result, error}`:
    status OK (all accepted), warning (some refused) or fail; `result` lists accepted events
    (`index`, `event_id`), `error` the refused ones (`index`, `error_code`, `error_message`)."""
    reqid = getattr(request.state, "reqid", None) or uuid.uuid4().hex
    try:
        app_id, placement = await resolve_code(request, control_plane(request), code)
    except InvalidCredentials as exc:
        return _answer(reqid, 401, exc)
    try:
        body = await _batch_body(request)
    except MagpieError as exc:
        return _answer(reqid, 400, exc)
    defaults = {k: body[k] for k in ("uid", "sid", "sdk", "v") if k in body}
    events: list[Any] = body["events"]
    bus = get_container(request).bus
    now = now_ms()
    accepted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    # Each event is validated and published in turn, and every PUBLISH_SLICE events the bus
    # workers get the loop to store what was published: few events are alive at a time, which
    # keeps Python's garbage collector from promoting (and scanning) thousands of them per
    # request. Holding a whole batch at once made full collections most of a busy server's CPU.
    for i, raw in enumerate(events):
        events[i] = None
        event, errors = validate_item(raw, app_id=app_id, now_ms=now, placement=placement,
                                      defaults=defaults)
        if event is None:
            refused.extend({"index": i, **err.to_item()} for err in errors)
            continue
        accepted.append({"index": i, "event_id": event.event_id})
        await bus.publish(event)
        if i % PUBLISH_SLICE == PUBLISH_SLICE - 1:
            await asyncio.sleep(0)
    status = "OK" if not refused else ("warning" if accepted else "fail")
    return JSONResponse({"status": status, "reqid": reqid, "result": accepted, "error": refused})
