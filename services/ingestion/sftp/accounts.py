"""SFTP credentials per application: one account (user name, hashed password) and its SSH keys.

Callers check that the application belongs to the caller's account first (the admin API and
the CLI use the control plane's `get_app`); these use cases only manage the credentials.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncssh
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.secrets import hash_password, new_token, verify_password
from magpie.common.controlplane.tables import AppKey, Application, utcnow
from magpie.common.errors import Conflict, InvalidRequest, LimitExceeded, NotFound
from magpie.ingestion.sftp.names import expected_names
from magpie.ingestion.sftp.paths import FOLDERS
from magpie.ingestion.sftp.tables import SftpAccount, SftpKey

MAX_KEYS = 20
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{2,63}")


@dataclass
class Credentials:
    """What a login resolves to: the application and what may prove it."""

    app_id: str
    password_hash: str | None
    key_blobs: set[str] = field(default_factory=set)


def app_folder(root: Path, app_id: str) -> Path:
    """The application's chroot, with its feed folders created."""
    folder = root / app_id
    for name in FOLDERS:
        (folder / name).mkdir(parents=True, exist_ok=True)
    return folder


async def create_user(db: async_sessionmaker, app_id: str, username: str | None = None) -> tuple[SftpAccount, str]:
    """Create the application's account; returns it with its password (shown only now)."""
    username = (username or app_id).lower()
    if not _USERNAME.fullmatch(username):
        raise InvalidRequest("A user name has 3 to 64 characters: a-z, 0-9, '_', '.', '-'.")
    password = new_token()
    now = utcnow()
    account = SftpAccount(app_id=app_id, username=username, password_hash=await _hash(password),
                          created_at=now, password_set_at=now)
    try:
        async with db() as s, s.begin():
            if await s.get(SftpAccount, app_id) is not None:
                raise Conflict(f"Application {app_id} has an SFTP account already; rotate its password instead.")
            s.add(account)
    except IntegrityError:
        raise Conflict(f"The user name {username!r} is taken.") from None
    return account, password


async def rotate_password(db: async_sessionmaker, app_id: str) -> tuple[SftpAccount, str]:
    """Give the account a new password at once (the old one stops working); returns it once."""
    password = new_token()
    digest = await _hash(password)
    async with db() as s, s.begin():
        account = await _account(s, app_id)
        account.password_hash, account.password_set_at = digest, utcnow()
    return account, password


async def add_key(db: async_sessionmaker, app_id: str, public_key: str) -> SftpKey:
    """Let an SSH public key (OpenSSH one-line format) log in as the application's account."""
    try:
        key = asyncssh.import_public_key(public_key.strip())
    except (asyncssh.KeyImportError, ValueError) as err:
        raise InvalidRequest(f"Not an SSH public key in OpenSSH format ({err}).") from None
    blob = key.export_public_key("openssh").decode().split()
    comment = public_key.strip().split(maxsplit=2)[2] if len(public_key.split()) > 2 else ""
    async with db() as s, s.begin():
        await _account(s, app_id)
        count = await s.scalar(select(func.count()).select_from(SftpKey).where(SftpKey.app_id == app_id))
        if count >= MAX_KEYS:
            raise LimitExceeded(f"An SFTP account has at most {MAX_KEYS} keys; remove one first.")
        fingerprint = key.get_fingerprint("sha256")
        if await s.scalar(select(SftpKey.id).where(SftpKey.app_id == app_id, SftpKey.fingerprint == fingerprint)):
            raise Conflict(f"The key {fingerprint} is already allowed.")
        row = SftpKey(app_id=app_id, fingerprint=fingerprint, algorithm=blob[0], key_data=" ".join(blob[:2]),
                      comment=comment[:200], created_at=utcnow())
        s.add(row)
    return row


async def remove_key(db: async_sessionmaker, app_id: str, fingerprint: str) -> None:
    """Stop a key from logging in (new connections; open sessions end on their own)."""
    async with db() as s, s.begin():
        gone = await s.execute(delete(SftpKey).where(SftpKey.app_id == app_id, SftpKey.fingerprint == fingerprint))
        if gone.rowcount == 0:
            raise NotFound(f"No key {fingerprint} for application {app_id}.")


async def delete_account(db: async_sessionmaker, app_id: str) -> None:
    """Remove the account and its keys; the files stay."""
    async with db() as s, s.begin():
        await _account(s, app_id)
        await s.execute(delete(SftpKey).where(SftpKey.app_id == app_id))
        await s.execute(delete(SftpAccount).where(SftpAccount.app_id == app_id))


async def describe(db: async_sessionmaker, app_id: str, host: str, port: int) -> dict[str, Any]:
    """Host, port, user name, keys and the exact file names to upload (one set per live app key)."""
    async with db() as s:
        account = await s.get(SftpAccount, app_id)
        keys = list(await s.scalars(select(SftpKey).where(SftpKey.app_id == app_id).order_by(SftpKey.id)))
        app_keys = list(await s.scalars(select(AppKey.app_key).where(
            AppKey.app_id == app_id, AppKey.revoked_at.is_(None)).order_by(AppKey.created_at)))
    return {
        "app_id": app_id, "host": host, "port": port, "enabled": account is not None,
        "username": account.username if account else None,
        "password_set": bool(account and account.password_hash),
        "password_set_at": _iso(account.password_set_at) if account else None,
        "keys": [{"fingerprint": k.fingerprint, "algorithm": k.algorithm, "comment": k.comment,
                  "created_at": _iso(k.created_at)} for k in keys],
        "folder": "/indexing",
        "files": [{"app_key": k, **expected_names(k)} for k in app_keys],
        "procedure": ("Upload the gzip-compressed CSV to /indexing, then an empty .txt marker of the same "
                      "name; processing starts within seconds. Results: /processed and /failed."),
    }


async def credentials(db: async_sessionmaker, username: str) -> Credentials | None:
    """The application and its secrets for a login name, or None."""
    async with db() as s:
        account = await s.scalar(select(SftpAccount).where(SftpAccount.username == username.lower()))
        if account is None or await s.get(Application, account.app_id) is None:  # a deleted app's login is dead
            return None
        blobs = set(await s.scalars(select(SftpKey.key_data).where(SftpKey.app_id == account.app_id)))
    return Credentials(account.app_id, account.password_hash, blobs)


async def check_password(creds: Credentials | None, password: str) -> bool:
    """Whether `password` opens the account (scrypt runs off the event loop)."""
    if creds is None or not creds.password_hash:
        await _hash(password)  # same cost either way: no user-name probing by timing
        return False
    return await asyncio.to_thread(verify_password, password, creds.password_hash)


def key_blob(key: asyncssh.SSHKey) -> str:
    """The stored form of a public key: algorithm and base64 data."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


async def _account(s: Any, app_id: str) -> SftpAccount:
    account = await s.get(SftpAccount, app_id)
    if account is None:
        raise NotFound(f"Application {app_id} has no SFTP account; create one first.")
    return account


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
