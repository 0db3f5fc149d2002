"""The SFTP server (asyncssh): logins per application, a chroot per application, writes only to /indexing.

`SftpService` runs the server, the watcher and the feed runner together: in the gateway's
lifespan in standalone mode, or alone with `magpie sftp serve` (distributed mode).
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.settings import Settings
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.sftp import accounts, paths
from magpie.ingestion.sftp.feed import FeedDeps
from magpie.ingestion.sftp.guard import GuardPolicy
from magpie.ingestion.sftp.runner import Runner
from magpie.ingestion.sftp.watcher import Watcher

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 2 << 30  # 4x the seed's 500 MB: room for a big feed, not for filling the disk
MAX_PASSWORD_TRIES = 3
FAILED_LOGIN_DELAY_S = 0.5
_WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


@dataclass
class OpenWrites:
    """Local files clients have open for writing: the watcher leaves them alone until closed."""

    counts: Counter[str] = field(default_factory=Counter)

    def __call__(self, path: Path) -> bool:
        return self.counts[str(path)] > 0


def _refuse(err: paths.PathRefused) -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied(str(err))


class FeedSFTPServer(asyncssh.SFTPServer):
    """One client session, confined to its application's folder."""

    def __init__(self, chan: asyncssh.SSHServerChannel, service: SftpService) -> None:
        app_id = chan.get_extra_info("magpie_app_id")
        folder = accounts.app_folder(service.root, app_id)
        super().__init__(chan, chroot=str(folder).encode())
        self._root = os.path.realpath(folder)
        self._service = service
        self._uploads: dict[Any, str] = {}  # open file object -> local path

    def map_path(self, path: bytes) -> bytes:
        try:
            return paths.local_path(self._root, path.decode("utf-8")).encode()
        except UnicodeDecodeError:
            raise asyncssh.SFTPPermissionDenied("File names must be UTF-8.") from None
        except paths.PathRefused as err:
            raise _refuse(err) from None

    def _writable(self, path: bytes) -> str:
        try:
            paths.upload_name(path.decode("utf-8", "replace"))
        except paths.PathRefused as err:
            raise _refuse(err) from None
        local = self.map_path(path).decode()
        if os.path.islink(local) or os.path.isdir(local):
            raise asyncssh.SFTPPermissionDenied("Only plain files can be written.")
        return local

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        if not pflags & _WRITE_FLAGS:
            return open(self.map_path(path), "rb", buffering=0)
        local = self._writable(path)
        flags = os.O_RDWR if pflags & asyncssh.FXF_READ else os.O_WRONLY
        for bit, os_bit in ((asyncssh.FXF_APPEND, os.O_APPEND), (asyncssh.FXF_CREAT, os.O_CREAT),
                            (asyncssh.FXF_TRUNC, os.O_TRUNC), (asyncssh.FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= os_bit
        # Our mode, not the client's: the watcher must be able to read what was uploaded.
        fd = os.open(local, flags | os.O_NOFOLLOW, 0o640)
        file_obj = os.fdopen(fd, "r+b" if pflags & asyncssh.FXF_READ else "wb", buffering=0)
        self._uploads[file_obj] = local
        self._service.writes.counts[local] += 1
        return file_obj

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> object:
        raise asyncssh.SFTPOpUnsupported("Use SFTP version 3.")

    def write(self, file_obj: object, offset: int, data: bytes) -> None:
        if file_obj not in self._uploads:
            raise asyncssh.SFTPPermissionDenied("This file is read-only.")
        if offset + len(data) > self._service.max_file_bytes:
            raise asyncssh.SFTPFailure(f"Files are limited to {self._service.max_file_bytes} bytes.")
        file_obj.seek(offset)  # type: ignore[attr-defined]
        file_obj.write(data)  # type: ignore[attr-defined]

    def close(self, file_obj: object) -> None:
        file_obj.close()  # type: ignore[attr-defined]
        local = self._uploads.pop(file_obj, None)
        if local is not None:
            self._service.writes.counts[local] -= 1
            if self._service.writes.counts[local] <= 0:
                del self._service.writes.counts[local]
            self._service.watcher.nudge()  # a marker may have just arrived

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        local = self.map_path(path)
        # '..' of the root is the root itself here (asyncssh would stat '/..', which is refused).
        attrs = asyncssh.SFTPAttrs.from_local(os.lstat(local))
        for name in (b".", b".."):
            yield asyncssh.SFTPName(name, attrs=attrs)
        with os.scandir(local) as entries:
            for entry in entries:
                yield asyncssh.SFTPName(os.fsencode(entry.name),
                                        attrs=asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False)))

    def remove(self, path: bytes) -> None:
        os.remove(self._writable(path))

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._writable(oldpath), self._writable(newpath)
        if os.path.exists(new):
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        os.rename(old, new)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        os.replace(self._writable(oldpath), self._writable(newpath))

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable(path)  # times and modes are ours to keep: accepted and ignored

    lsetstat = setstat

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        if file_obj not in self._uploads:
            raise asyncssh.SFTPPermissionDenied("This file is read-only.")

    def _read_only(self, *args: object) -> None:
        raise asyncssh.SFTPPermissionDenied("Not allowed: only files in /indexing can be created or changed.")

    mkdir = rmdir = symlink = link = _read_only


class _Auth(asyncssh.SSHServer):
    """Password or public key of the application's account; the app id goes on the connection."""

    def __init__(self, service: SftpService) -> None:
        self._service = service
        self._conn: asyncssh.SSHServerConnection | None = None
        self._creds: accounts.Credentials | None = None
        self._tries = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    async def begin_auth(self, username: str) -> bool:
        self._creds = await accounts.credentials(self._service.db, username)
        return True

    def password_auth_supported(self) -> bool:
        return self._tries < MAX_PASSWORD_TRIES

    async def validate_password(self, username: str, password: str) -> bool:
        self._tries += 1
        return await self._grant(await accounts.check_password(self._creds, password), username)

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Only says whether the key may log in; asyncssh then checks the client holds it.
        return await self._grant(self._creds is not None and accounts.key_blob(key) in self._creds.key_blobs,
                                 username, delay=False)

    async def _grant(self, ok: bool, username: str, delay: bool = True) -> bool:
        if ok and self._creds is not None and self._conn is not None:
            self._conn.set_extra_info(magpie_app_id=self._creds.app_id)
            return True
        if delay:
            log.info("SFTP login refused for %r", username)
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing down
        return False


class SftpService:
    """The server, the watcher and the runner of one process."""

    def __init__(self, settings: Settings, ingest: IngestDeps, db: async_sessionmaker, *,
                 poll_s: float = 1.0) -> None:
        self.settings, self.db = settings, db
        self.root = settings.data_dir / "sftp"
        self.host = settings.sftp_host or settings.host
        self.port = settings.sftp_port
        self.max_file_bytes = MAX_FILE_BYTES
        self.writes = OpenWrites()
        policy = GuardPolicy(settings.sftp_guard_min_items, settings.sftp_guard_max_remove)
        self.feeds = FeedDeps(ingest=ingest, root=self.root, policy=policy)
        self.runner = Runner(self.feeds)
        self.watcher = Watcher(self.feeds, self.runner, busy=self.writes, poll_s=poll_s, resume_s=10.0)
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Resume unfinished feeds, start watching, then listen (a busy port is logged, not fatal)."""
        self.root.mkdir(parents=True, exist_ok=True)
        resumed = await self.runner.resume()
        if resumed:
            log.info("resumed the SFTP feeds of %d applications", resumed)
        self._task = asyncio.create_task(self.watcher.run(self._stop), name="sftp-watcher")
        _RUNNING.append(self)
        try:
            self._acceptor = await asyncssh.listen(
                self.host, self.port, server_host_keys=[host_key(self.settings)],
                server_factory=lambda: _Auth(self), sftp_factory=lambda chan: FeedSFTPServer(chan, self),
                allow_scp=False, login_timeout=60, keepalive_interval=60)
        except OSError as err:
            # The HTTP API stays up; feeds already uploaded are still processed.
            log.error("SFTP server could not listen on %s:%d (%s); SFTP uploads are unavailable",
                      self.host, self.port, err)
            return
        log.info("SFTP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, watching and running; unfinished feeds resume on the next start."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        self._stop.set()
        self.watcher.nudge()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.runner.stop()
        if self in _RUNNING:
            _RUNNING.remove(self)


def host_key(settings: Settings) -> asyncssh.SSHKey:
    """The server's host key, generated (ed25519, mode 0600) on first use."""
    path = settings.sftp_host_key or settings.data_dir / "sftp_host_ed25519_key"
    if path.is_file():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    return key


async def start(settings: Settings, ingest: IngestDeps, db: async_sessionmaker) -> SftpService:
    """Start the SFTP service of this process (the gateway's lifespan calls this)."""
    service = SftpService(settings, ingest, db)
    await service.start()
    return service


_RUNNING: list[SftpService] = []


def running() -> SftpService | None:
    """The SFTP service this process runs, if any (to wake its runner after an API call)."""
    return _RUNNING[-1] if _RUNNING else None
