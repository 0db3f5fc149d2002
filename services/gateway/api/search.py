"""Search API (ViSearch legacy routes): find similar, search by image, recommendations,
colour search. Thin: parameters are parsed in magpie.search.params, searches run in
magpie.search.query, answers are shaped by magpie.search.response. Errors answer HTTP 200 with
`status: "fail"` (magpie.gateway.errors), as the official SDKs expect.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from magpie.common.errors import InvalidImageFormat
from magpie.common.events.analytics import SearchServed
from magpie.common.ports import Bus
from magpie.gateway.api.deps import Db, app_access, get_container
from magpie.gateway.api.search_docs import COLOR, IM_NAME, UPLOAD, UPLOAD_BODY, docs
from magpie.gateway.controlplane.access import AppAccess
from magpie.search import query
from magpie.search.params import SearchParams, Unsupported, parse_params
from magpie.search.query_image import MAX_UPLOAD_BYTES
from magpie.search.response import Outcome, envelope

log = logging.getLogger(__name__)
router = APIRouter(tags=["search"])
_MAX_FORM_FIELDS = 256


def _credentials(request: Request) -> str | None:
    """A digest of the key the request presents (header or query), None when in a form."""
    presented = request.headers.get("authorization") or request.query_params.get(
        "access_key") or request.query_params.get("app_key")
    return hashlib.sha256(presented.encode()).hexdigest() if presented else None


async def search_access(request: Request, db: Db) -> AppAccess:
    """`app_access` (Basic access:secret, or a search-only app key), remembered."""
    # Searches are the hot path: a key seen before is checked again in the background (see
    # magpie.search.cache), so a search never waits for the control-plane database, which an
    # ingest keeps busy.
    key = _credentials(request)
    if key is None:
        return await app_access(request, db)
    found = await search_deps(request).access.get(key, lambda: app_access(request, db))
    request.state.app_id = found.app_id  # a cached key is counted in the usage statistics too
    return found


SearchAccess = Annotated[AppAccess, Depends(search_access)]


def search_deps(request: Request) -> query.SearchDeps:
    """The process's search dependencies (built with the container)."""
    return get_container(request).search


async def read_request(request: Request) -> tuple[list[tuple[str, str]], bytes | None]:
    """Parameters from the query string and, on POST, form fields; and the `image` upload."""
    pairs = list(request.query_params.multi_items())
    upload: bytes | None = None
    ctype = request.headers.get("content-type", "")
    if request.method == "POST" and ctype.startswith(("multipart/form-data",
                                                      "application/x-www-form-urlencoded")):
        form = await request.form(max_files=4, max_fields=_MAX_FORM_FIELDS)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "image" and upload is None:
                    upload = await _read_upload(value)
            else:
                pairs.append((key, value))
    return pairs, upload


async def _read_upload(file: UploadFile) -> bytes:
    """The uploaded file, refused past the 10 MB limit without reading it all."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidImageFormat(f"The image file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
    return data


@dataclass
class Started:
    """A search request read and checked, and when it started."""

    deps: query.SearchDeps
    params: SearchParams
    upload: bytes | None
    at: float


async def begin(request: Request) -> Started:
    """Read and check the parameters (InvalidRequest names the first bad one)."""
    at = time.perf_counter()
    pairs, upload = await read_request(request)
    return Started(search_deps(request), parse_params(pairs), upload, at)


def answer(request: Request, a: AppAccess, method: str, s: Started,
           outcome: Outcome) -> JSONResponse:
    """The envelope, and the served search published for analytics once it is sent."""
    reqid = request.state.reqid
    served = SearchServed(
        app_id=a.app_id, reqid=reqid, method=method, result_count=len(outcome.hits),
        im_names=[h.im_name for h in outcome.hits], first_pos=s.params.offset + 1,
        uid=s.params.va_uid, sid=s.params.va_sid, ts=int(time.time() * 1000),
        latency_ms=round((time.perf_counter() - s.at) * 1000, 3))
    return JSONResponse(envelope(method, s.params, outcome, reqid),
                        background=BackgroundTask(_publish, get_container(request).bus, served))


async def _publish(bus: Bus, served: SearchServed) -> None:
    try:
        await bus.publish(served)
    except Exception:  # noqa: BLE001 - analytics must never fail a search already answered
        log.exception("could not publish search.served %s", served.reqid)


@router.get("/search", name="search", openapi_extra=docs(IM_NAME))
async def search(request: Request, a: SearchAccess) -> JSONResponse:
    """Visually similar items to the indexed item `im_name` (the item itself left out)."""
    s = await begin(request)
    outcome = await query.find_similar(s.deps, a.app_id, s.params)
    return answer(request, a, "search", s, outcome)


@router.get("/uploadsearch", name="uploadsearch", openapi_extra=docs(UPLOAD))
@router.post("/uploadsearch", name="uploadsearch", openapi_extra=docs(UPLOAD, UPLOAD_BODY))
async def uploadsearch(request: Request, a: SearchAccess) -> JSONResponse:
    """Items like an `image` (≤10 MB), an `im_url` or an earlier `im_id`; `box` for a region."""
    s = await begin(request)
    outcome = await query.upload_search(s.deps, a.app_id, s.params, s.upload)
    return answer(request, a, "uploadsearch", s, outcome)


@router.get("/recommendation", name="recommendation", openapi_extra=docs(IM_NAME))
@router.post("/recommendation", name="recommendation", openapi_extra=docs(IM_NAME))
@router.get("/recommendations", name="recommendations", openapi_extra=docs(IM_NAME))
@router.post("/recommendations", name="recommendations", openapi_extra=docs(IM_NAME))
async def recommendation(request: Request, a: SearchAccess) -> JSONResponse:
    """"You may also like" for `im_name`: similar items, near-duplicates removed, diversified.
    `/recommendations` (the Java SDK's later path) is the same; each answers in its own name."""
    s = await begin(request)
    outcome = await query.recommend(s.deps, a.app_id, s.params)
    return answer(request, a, request.scope["route"].name, s, outcome)


@router.get("/colorsearch", name="colorsearch", openapi_extra=docs(COLOR))
async def colorsearch(request: Request, a: SearchAccess) -> JSONResponse:
    """Items by dominant colour: `color=RRGGBB` (repeat as `RRGGBB:weight` to mix colours)."""
    s = await begin(request)
    outcome = await query.color_search(s.deps, a.app_id, s.params)
    return answer(request, a, "colorsearch", s, outcome)


# Methods of the reference that need an object detector or a multi-object index: answered
# (after the key check) with status "fail" and what to use instead, never a 404 or a 500.
_UNSUPPORTED_METHODS = {
    "discoversearch": "discoversearch needs an object detector, which Magpie does not have: "
                      "use uploadsearch, with box=x1,y1,x2,y2 to search one object.",
    "similarproducts": "similarproducts needs an object detector, which Magpie does not have: "
                       "use uploadsearch, with box=x1,y1,x2,y2 to search one object.",
    "match": "match searches a multi-object index, which Magpie does not build: use search.",
}


async def unsupported(request: Request, a: SearchAccess) -> JSONResponse:
    """A reference method Magpie does not offer: status fail, saying what to use instead."""
    raise Unsupported(_UNSUPPORTED_METHODS[request.scope["route"].name])


for _method in _UNSUPPORTED_METHODS:
    for _verb in ("GET", "POST"):  # one route per verb: OpenAPI operation ids must be unique
        router.add_api_route(f"/{_method}", unsupported, methods=[_verb], name=_method,
                             operation_id=f"{_method}_{_verb.lower()}",
                             summary=f"{_method} (not offered)",
                             description=_UNSUPPORTED_METHODS[_method])
