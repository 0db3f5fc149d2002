"""Web widgets and the JavaScript SDK, served to merchant pages of any origin: the widget
script `/widgets/v1/magpie-widgets.js` (a classic script: the SDK and the widgets in one
closure), the SDK `/widgets/v1/magpie-sdk.js` (an ES module), item thumbnails for search-only
keys, and the CORS headers that let a storefront on another origin call the public search and
tracking routes. The sources live in `sdk/js/`, read on first request (never at import).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Query, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from magpie.common.errors import NotFound, Unavailable
from magpie.gateway.api.deps import Db, app_access, get_container
from magpie.image_fetch.thumbnails import load_thumbnail

PREFIX = "/widgets/v1"
# Where sdk/js is: the repository (an editable install, `make run`), or installed as data
# files under the environment's prefix (`data_files=[("share/magpie/sdk/js", ...)]`).
SDK_DIRS = (Path(__file__).resolve().parents[3] / "sdk" / "js",
            Path(sys.prefix) / "share" / "magpie" / "sdk" / "js")
JS_TYPE = "text/javascript; charset=utf-8"
# Short: a fixed widget reaches every storefront within five minutes; ETags make the
# revalidation after that a 304.
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"
router = APIRouter(prefix=PREFIX, tags=["widgets"])

# Routes a storefront calls from the shopper's browser with a search-only app key.
CORS_PATHS = ("/search", "/uploadsearch", "/recommendation", "/recommendations", "/colorsearch",
              "/v3/", "/__aq.gif", f"{PREFIX}/")
# X-Log-ID is the reqid of an answer that has none in its body (the official SDK reads it).
CORS_HEADERS = {
    b"access-control-allow-origin": b"*",
    b"access-control-expose-headers": b"X-Log-ID, X-Tracking, X-Tracking-Error",
}
# No Authorization: the secret key must never travel from a browser, so a cross-origin page
# cannot even ask to send one. X-Requested-With: the official ViSearch JS SDK sends it.
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    b"access-control-allow-methods": b"GET, POST, OPTIONS",
    b"access-control-allow-headers": b"Accept, Content-Type, X-Requested-With",
    b"access-control-max-age": b"86400",
}


def is_public_path(path: str) -> bool:
    """Whether `path` is a route a browser on another origin may call."""
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in CORS_PATHS)


class PublicCors:
    """CORS for the public browser routes only: preflights are answered here (204), and every
    answer of those routes (errors too, so a widget can read why) allows any origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_public_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204,
                        "headers": list(PREFLIGHT_HEADERS.items())})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k.lower() not in CORS_HEADERS]
                message["headers"] = kept + list(CORS_HEADERS.items())
            await send(message)

        await self.app(scope, receive, send_with_cors)


@dataclass(frozen=True)
class Asset:
    """A served file: its bytes, gzipped once, and their ETag."""

    body: bytes
    gzipped: bytes
    etag: str


def _asset(text: str) -> Asset:
    body = text.encode()
    # mtime=0: the same bytes on every gateway, so caches and ETags agree.
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, gzip.compress(body, 9, mtime=0), etag)


_EXPORT = re.compile(r"^export\s+(?=(?:async\s+)?function\b|class\b|const\b|let\b)", re.M)


def bundle(sdk_source: str, css: str, *widget_sources: str) -> str:
    """The classic widget script: the SDK module with its `export` keywords dropped, the
    widgets' CSS as a string, then the widget sources, in one strict-mode closure (one
    request, nothing leaks into the page's globals)."""
    if re.search(r"^\s*(?:import\b|export\s+(?:default|\{|\*))", sdk_source, re.M):
        raise ValueError("the SDK must export only declarations to be bundled")
    return ("/* Magpie widgets: the JavaScript SDK and the widgets. */\n"
            + "(function () {\n'use strict';\n" + _EXPORT.sub("", sdk_source)
            + f"\nconst WIDGETS_CSS = {json.dumps(css)};\n"
            + "\n".join(widget_sources) + "\n})();\n")


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """The served files by name, read once from sdk/js."""
    sdk = _read("magpie-sdk.js")
    widgets = bundle(sdk, _read("widgets.css"), _read("widget-parts.js"), _read("widgets.js"))
    return {"magpie-sdk.js": _asset(sdk), "magpie-widgets.js": _asset(widgets)}


def _read(name: str) -> str:
    found = next((d for d in SDK_DIRS if (d / name).is_file()), SDK_DIRS[0])
    return (found / name).read_text(encoding="utf-8")


def serve_asset(request: Request, name: str) -> Response:
    """The asset, or 304 when the browser's copy is current."""
    try:
        asset = assets()[name]
    except OSError as exc:  # an install without the repository's sdk/js folder
        raise Unavailable(f"The widget files are not installed ({exc.filename}).") from None
    headers = {"ETag": asset.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding",
               # Loadable by <script> (and import()) from any storefront.
               "Cross-Origin-Resource-Policy": "cross-origin", "X-Content-Type-Options": "nosniff"}
    if asset.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.gzipped, media_type=JS_TYPE,
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=JS_TYPE, headers=headers)


@router.get("/magpie-widgets.js", response_class=Response)
async def widgets_script(request: Request) -> Response:
    """The widget script: `<script src=".../widgets/v1/magpie-widgets.js" defer>` mounts every
    `data-magpie-widget` element (`search-by-image`, `similar`)."""
    return serve_asset(request, "magpie-widgets.js")


@router.get("/magpie-sdk.js", response_class=Response)
async def sdk_module(request: Request) -> Response:
    """The JavaScript SDK as an ES module (browsers and Node 20)."""
    return serve_asset(request, "magpie-sdk.js")


@router.get("/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No such item."}})
async def thumbnail(request: Request, db: Db,
                    im_name: str = Query(..., min_length=1, max_length=128)) -> Response:
    """An item's thumbnail (JPEG) for widget cards: `access_key` = a search-only app key."""
    found = await app_access(request, db)
    try:
        data = await load_thumbnail(get_container(request).objects, found.app_id, im_name)
    except NotFound:
        # An image's answer, not a JSON envelope: the browser shows the card's alt text.
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "public, max-age=300",
                             "Cross-Origin-Resource-Policy": "cross-origin"})
