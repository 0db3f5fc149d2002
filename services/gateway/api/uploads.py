"""CSV upload API: send a file, confirm a proposed schema, follow progress. Thin: the use
cases are in magpie.ingestion.uploads; rows end up in one transaction (`/insert/status`)."""
from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from magpie.common.errors import InvalidRequest, NotFound
from magpie.gateway.api.deps import DataAccess, get_container
from magpie.gateway.api.schemas import FieldIn
from magpie.gateway.bootstrap import Container
from magpie.ingestion import uploads
from magpie.ingestion.uploads import Upload, UploadDeps, UploadTooLarge

router = APIRouter(tags=["uploads"])
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file
_UPLOAD_ID = re.compile(r"[a-z0-9]{1,32}")


def deps_of(c: Container) -> UploadDeps:
    """The upload use cases' dependencies, from the process's container."""
    return UploadDeps(ingest=c.ingest, db=c.db, objects=c.objects, work_dir=c.settings.data_dir / "uploads")


def upload_deps(request: Request) -> UploadDeps:
    """Request dependency: see deps_of."""
    return deps_of(get_container(request))


def check_length(request: Request) -> None:
    """Refuse a body declared too large before any of it is read (and spooled)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > uploads.MAX_UPLOAD_BYTES + _MULTIPART_SLACK:
        raise UploadTooLarge()


class ConfirmIn(BaseModel):
    fields: list[FieldIn]


def _answer(method: str, up: Upload) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "OK", "method": method, "error": [], "upload_id": up.upload_id, "state": up.state,
        "filename": up.filename, "size_bytes": up.size_bytes, "columns": up.columns,
        "ignored_columns": up.ignored, "rows_read": up.rows_read,
        "created_at": up.created_at.isoformat(), "updated_at": up.updated_at.isoformat()}
    if up.trans_id is not None:
        body["trans_id"] = up.trans_id
    if up.state == uploads.NEEDS_CONFIRMATION and up.proposal is not None:
        body["proposed_schema"] = up.proposal["fields"]
        body["column_problems"] = up.proposal["problems"]
    if up.error:
        body["failure"] = up.error
    return body


def _id(upload_id: str) -> str:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise NotFound(f"No upload {upload_id}.")
    return upload_id


@router.post("/v1/uploads", name="uploads")
async def create_upload(request: Request, _: Annotated[None, Depends(check_length)], a: DataAccess,
                        deps: Annotated[UploadDeps, Depends(upload_deps)]) -> dict[str, Any]:
    """Upload a CSV feed (multipart field `file`, UTF-8, header row first, at most 500 MB).

    Answers at once: `processing` with the `trans_id` to follow on `/insert/status`, or, when the
    application has no schema yet, `needs_confirmation` with a `proposed_schema` to confirm.
    """
    form = await request.form(max_files=1, max_fields=16)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidRequest("Send the CSV file as the multipart form field 'file'.")
    up = await uploads.receive(deps, a.app_id, file.filename or "", file, max_bytes=uploads.MAX_UPLOAD_BYTES)
    return _answer("uploads", up)


@router.get("/v1/uploads/{upload_id}", name="uploads/get")
async def get_upload(upload_id: str, a: DataAccess,
                     deps: Annotated[UploadDeps, Depends(upload_deps)]) -> dict[str, Any]:
    """An upload's state (needs_confirmation, processing, done, failed) and rows read so far."""
    return _answer("uploads/get", await uploads.get(deps, a.app_id, _id(upload_id)))


@router.post("/v1/uploads/{upload_id}/confirm", name="uploads/confirm")
async def confirm_upload(upload_id: str, body: ConfirmIn, a: DataAccess,
                         deps: Annotated[UploadDeps, Depends(upload_deps)]) -> dict[str, Any]:
    """Set the application's schema to `fields` (the proposal, as edited) and process the file."""
    return _answer("uploads/confirm", await uploads.confirm(deps, a.app_id, _id(upload_id), body.fields))
