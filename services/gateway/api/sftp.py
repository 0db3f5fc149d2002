"""SFTP datafeed API: an application's SFTP account (`/admin/v1/apps/{app_id}/sftp`) and its
feeds (`/v1/feeds`, Data API keys). Thin: the use cases are in magpie.ingestion.sftp."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field

from magpie.common.errors import NotFound
from magpie.gateway.api.deps import Admin, DataAccess, Db, Viewer, get_container
from magpie.gateway.controlplane import apps
from magpie.ingestion.sftp import accounts, results, watcher
from magpie.ingestion.sftp import feed as feeds
from magpie.ingestion.sftp.feed import FeedDeps

router = APIRouter(tags=["sftp"])
NO_CONTENT = {"status_code": status.HTTP_204_NO_CONTENT, "response_class": Response}


class UserIn(BaseModel):
    username: str | None = Field(None, description="Default: the application id")


class PublicKeyIn(BaseModel):
    public_key: str = Field(description="One line in OpenSSH format: 'ssh-ed25519 AAAA... comment'")


def _where(request: Request) -> tuple[str, int]:
    return get_container(request).settings.sftp_address(request.url.hostname)


def _feed_deps(request: Request) -> FeedDeps:
    c = get_container(request)
    return FeedDeps(ingest=c.ingest, root=c.settings.data_dir / "sftp")


async def _describe(request: Request, db: Any, app_id: str) -> dict[str, Any]:
    return await accounts.describe(db, app_id, *_where(request))


@router.get("/admin/v1/apps/{app_id}/sftp")
async def show(app_id: str, request: Request, db: Db, m: Viewer) -> dict[str, Any]:
    """Host, port, user name, keys, and the exact file names to upload for each mode."""
    await apps.show_app(db, m.account_id, app_id)
    return await _describe(request, db, app_id)


@router.post("/admin/v1/apps/{app_id}/sftp", status_code=201)
async def create_user(app_id: str, request: Request, db: Db, m: Admin, body: UserIn | None = None) -> dict[str, Any]:
    """Create the application's SFTP account; the password is shown only in this answer."""
    await apps.show_app(db, m.account_id, app_id)
    _, password = await accounts.create_user(db, app_id, body.username if body else None)
    accounts.app_folder(get_container(request).settings.data_dir / "sftp", app_id)
    return {**await _describe(request, db, app_id), "password": password}


@router.delete("/admin/v1/apps/{app_id}/sftp", **NO_CONTENT)
async def delete_user(app_id: str, db: Db, m: Admin) -> None:
    """Remove the SFTP account and its keys (uploaded files and feeds stay)."""
    await apps.show_app(db, m.account_id, app_id)
    await accounts.delete_account(db, app_id)


@router.post("/admin/v1/apps/{app_id}/sftp/password")
async def rotate_password(app_id: str, request: Request, db: Db, m: Admin) -> dict[str, Any]:
    """Replace the password at once; the new one is shown only in this answer."""
    await apps.show_app(db, m.account_id, app_id)
    _, password = await accounts.rotate_password(db, app_id)
    return {**await _describe(request, db, app_id), "password": password}


@router.post("/admin/v1/apps/{app_id}/sftp/keys", status_code=201)
async def add_key(app_id: str, body: PublicKeyIn, db: Db, m: Admin) -> dict[str, Any]:
    """Allow an SSH public key to log in as the application's account."""
    await apps.show_app(db, m.account_id, app_id)
    key = await accounts.add_key(db, app_id, body.public_key)
    return {"fingerprint": key.fingerprint, "algorithm": key.algorithm, "comment": key.comment,
            "created_at": key.created_at.isoformat()}


@router.delete("/admin/v1/apps/{app_id}/sftp/keys/{fingerprint:path}", **NO_CONTENT)
async def remove_key(app_id: str, fingerprint: str, db: Db, m: Admin) -> None:
    """Stop a key from logging in."""
    await apps.show_app(db, m.account_id, app_id)
    await accounts.remove_key(db, app_id, fingerprint)


@router.post("/admin/v1/apps/{app_id}/sftp/feeds/{feed_id}/force")
async def force_feed(app_id: str, feed_id: str, request: Request, db: Db, m: Admin) -> dict[str, Any]:
    """Process a FULL feed the safety guard refused, without the guard (a new trans_id)."""
    from magpie.ingestion.sftp.server import running

    await apps.show_app(db, m.account_id, app_id)
    feed = await feeds.force(_feed_deps(request), app_id, feed_id)
    if (service := running()) is not None:
        service.runner.kick(app_id)
    return results.feed_out(feed)


@router.get("/v1/feeds", name="feeds")
async def list_feeds(request: Request, a: DataAccess, limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    """The application's latest SFTP feeds, newest first, and the files waiting for their marker."""
    deps = _feed_deps(request)
    rows = await feeds.list_feeds(deps.ingest, a.app_id, limit)
    return {"status": "OK", "method": "feeds", "error": [], "result": [results.feed_out(f) for f in rows],
            "waiting": watcher.waiting_files(deps.root, a.app_id)}


@router.get("/v1/feeds/{feed_id}", name="feeds/get")
async def get_feed(feed_id: str, request: Request, a: DataAccess) -> dict[str, Any]:
    """One feed: its state, trans_id (see `/insert/status`), counts, and its result file."""
    feed = await feeds.load(_feed_deps(request), feed_id)
    if feed.app_id != a.app_id:
        raise NotFound(f"No feed {feed_id}.")
    return {"status": "OK", "method": "feeds/get", "error": [], "result": [results.feed_out(feed)]}
