"""Data API: the ViSearch form routes (`/insert`, `/insert/status`, `/remove`) and their
JSON twins under `/v1`. Thin: parsing and shaping only; logic is in magpie.ingestion."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from magpie.common.errors import (
    BatchTooLarge,
    ImageNameNotFound,
    InvalidRequest,
    NothingInserted,
    TransactionNotFound,
)
from magpie.gateway.api.deps import DataAccess, get_container
from magpie.ingestion import service
from magpie.ingestion.service import BatchResult, IngestDeps
from magpie.ingestion.store import TransactionStatus
from magpie.ingestion.validation import MAX_BATCH, MAX_PARAMS, parse_indexed_form

router = APIRouter(tags=["data"])
# Enough form fields for a full batch of 100 items with 32 parameters each, and no more.
_MAX_FORM_FIELDS = MAX_BATCH * (MAX_PARAMS + 1) + 16


def ingest_deps(request: Request) -> IngestDeps:
    """The ingestion use cases' dependencies."""
    return get_container(request).ingest


def _batch_answer(method: str, result: BatchResult) -> dict[str, Any]:
    status = "OK" if not result.errors else ("warning" if result.total else "fail")
    body: dict[str, Any] = {"status": status, "method": method, "total": result.total,
                            "result": [], "error": [e.to_wire() for e in result.errors]}
    if result.trans_id is not None:
        body["trans_id"] = result.trans_id
    return body


def _ts(value: datetime) -> str:
    # The reference's format: 2015-01-02T03:04:05.678+0000
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}" + value.strftime("%z")


def _status_answer(method: str, st: TransactionStatus, page: int, limit: int) -> dict[str, Any]:
    return {"status": "OK", "method": method, "error": [], "result": [{
        "trans_id": st.trans_id, "processed_percent": st.processed_percent, "total": st.total,
        "success_count": st.success_count, "fail_count": st.fail_count,
        "start_time": _ts(st.start_time), "update_time": _ts(st.update_time),
        "error_list": [{"im_name": e.im_name, "error_code": e.error_code, "error_message": e.error_message}
                       for e in st.errors],
        "error_page": page, "error_limit": limit,
    }]}


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InvalidRequest("Send the items as form fields im_name[i], im_url[i], <field>[i].")
    form = await request.form(max_fields=_MAX_FORM_FIELDS, max_files=0)
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


@router.post("/insert", name="insert")
async def insert(request: Request, a: DataAccess, deps: IngestDeps = Depends(ingest_deps)) -> dict[str, Any]:
    """Insert or update up to 100 items (form fields `im_name[i]`, `im_url[i]`, `<field>[i]`).

    Answers at once with a `trans_id`; images are fetched and indexed asynchronously.
    An item without `im_url` whose im_name exists updates only its metadata.
    """
    items = parse_indexed_form(await _form_pairs(request))
    if not items:
        raise NothingInserted()
    if len(items) > MAX_BATCH:
        raise BatchTooLarge()
    return _batch_answer("insert", await service.insert(deps, a.app_id, items))


@router.get("/insert/status/{trans_id}", name="insert/status")
async def insert_status(
    trans_id: str, a: DataAccess, deps: IngestDeps = Depends(ingest_deps),
    error_page: int = Query(1, ge=1), error_limit: int = Query(10, ge=1, le=1000),
) -> dict[str, Any]:
    """Progress of a transaction: counts, processed_percent (100 = done) and a page of errors."""
    if not trans_id.isdigit():
        raise TransactionNotFound()
    st = await deps.store.status(a.app_id, int(trans_id), error_page, error_limit)
    return _status_answer("insert/status", st, error_page, error_limit)


@router.post("/remove", name="remove")
async def remove(request: Request, a: DataAccess, deps: IngestDeps = Depends(ingest_deps)) -> dict[str, Any]:
    """Remove items by `im_name[i]`; unknown names are reported with code 102."""
    pairs = [(int(k[8:-1]), v) for k, v in await _form_pairs(request)
             if k.startswith("im_name[") and k.endswith("]") and k[8:-1].isdigit()]
    if not pairs:
        raise NothingInserted("No im_name to remove.")
    return _batch_answer("remove", await service.remove(deps, a.app_id, sorted(pairs)))


# --- JSON twins --------------------------------------------------------------------------
class ItemsIn(BaseModel):
    items: list[dict[str, Any]] = Field(description="Each item: im_name, im_url (new items), schema fields")


class NamesIn(BaseModel):
    im_names: list[str] = Field(min_length=1, max_length=1000)


def _json_items(body: ItemsIn) -> list[tuple[int, dict[str, Any]]]:
    if not body.items:
        raise NothingInserted()
    if len(body.items) > MAX_BATCH:
        raise BatchTooLarge()
    return list(enumerate(body.items))


@router.post("/v1/items", name="items")
async def insert_json(body: ItemsIn, a: DataAccess, deps: IngestDeps = Depends(ingest_deps)) -> dict[str, Any]:
    """Insert or update up to 100 items given as JSON objects."""
    return _batch_answer("items", await service.insert(deps, a.app_id, _json_items(body)))


@router.post("/v1/items/remove", name="items/remove")
async def remove_json(body: NamesIn, a: DataAccess, deps: IngestDeps = Depends(ingest_deps)) -> dict[str, Any]:
    """Remove items by im_name."""
    return _batch_answer("items/remove", await service.remove(deps, a.app_id, list(enumerate(body.im_names))))


@router.get("/v1/transactions/{trans_id}", name="transactions")
async def transaction_json(
    trans_id: int, a: DataAccess, deps: IngestDeps = Depends(ingest_deps),
    error_page: int = Query(1, ge=1), error_limit: int = Query(10, ge=1, le=1000),
) -> dict[str, Any]:
    """A transaction's progress, as `/insert/status`."""
    st = await deps.store.status(a.app_id, trans_id, error_page, error_limit)
    return _status_answer("transactions", st, error_page, error_limit)


@router.get("/v1/transactions", name="transactions/list")
async def transactions_json(a: DataAccess, deps: IngestDeps = Depends(ingest_deps),
                            limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    """The application's latest transactions, newest first."""
    rows = await deps.store.list_transactions(a.app_id, limit)
    return {"status": "OK", "method": "transactions/list", "error": [], "result": [
        {"trans_id": t.trans_id, "source": t.source, "total": t.total,
         "start_time": _ts(t.created_at), "update_time": _ts(t.updated_at)} for t in rows]}


@router.get("/v1/items/{im_name:path}", name="items/get")
async def get_item(im_name: str, request: Request, a: DataAccess) -> dict[str, Any]:
    """One indexed item: its im_url and every schema field (text fields included, for the
    merchant's own key), as the index holds them."""
    from magpie.search.handlers import SYSTEM_KEY

    point = await get_container(request).index.get(a.app_id, im_name)
    if point is None:
        raise ImageNameNotFound()
    payload = dict(point.payload)
    system = payload.pop(SYSTEM_KEY, {}) or {}
    payload.pop("im_name", None)
    return {"status": "OK", "method": "items/get", "error": [], "result": [{
        "im_name": im_name, "im_url": system.get("im_url"), "model": system.get("model"),
        "colors": system.get("colors", []), "value_map": payload}]}
