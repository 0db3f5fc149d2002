"""The object store on a local folder: one file per key under `root`.

Writes go to a temp file in `root/.magpie-tmp/` (same file system, so `os.replace` is
atomic), are fsynced, then renamed over the target: a reader or a crash sees the old object or
the new one, never half of one. Temp files a crash leaves behind are never listed and are
swept by `start()` once they are an hour old. `.magpie-tmp` is therefore not usable as a key's
first segment here.

Content types are not kept: the port never returns them, and whoever serves files from this
folder can guess them from the key's extension. (S3 keeps them, for direct serving.)

A folder cannot be both a file and a directory, so unlike S3 the keys `a` and `a/b` cannot
both exist; writing the second raises `Conflict`.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from magpie.common.errors import Conflict, InvalidRequest, NotFound
from magpie.common.storage.keys import validate_key, validate_prefix

TMP_DIR = ".magpie-tmp"
_STALE_TMP_S = 3600  # older temp files belong to no live writer (a write takes seconds)


class LocalObjectStore:
    """An ObjectStore over the files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / TMP_DIR

    async def start(self) -> None:
        """Create the folder and sweep temp files that a crashed writer left."""
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Nothing to release: every call opens and closes its own files."""

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Store `data` under `key` atomically, replacing what was there."""
        path = self._path(key)
        await asyncio.to_thread(self._put, key, path, bytes(data))

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`; NotFound if there are none."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"No object under key {key!r}.") from None

    async def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
        await asyncio.to_thread(self._delete, self._path(key))

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""
        validate_prefix(prefix)
        return await asyncio.to_thread(lambda: sorted(key for key, _ in self._walk(prefix)))

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key under `prefix`; returns how many were removed."""
        validate_prefix(prefix)
        return await asyncio.to_thread(self._delete_prefix, prefix)

    async def usage_bytes(self, prefix: str) -> int:
        """Total size of the objects under `prefix`."""
        validate_prefix(prefix)
        return await asyncio.to_thread(self._usage, prefix)

    # --- blocking helpers, run in a worker thread -----------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] == TMP_DIR:
            raise InvalidRequest(f"Object keys may not start with {TMP_DIR!r} here: {key!r}.")
        return self.root / key

    def _start(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - _STALE_TMP_S
        for entry in os.scandir(self._tmp):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:  # another process swept it first
                pass

    def _put(self, key: str, path: Path, data: bytes) -> None:
        # Cheap when it exists, and lets put() work even if start() was never awaited.
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                # Without fsync a power loss after the rename can leave an empty file.
                os.fsync(f.fileno())
            self._commit(key, tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _commit(self, key: str, tmp: Path, path: Path) -> None:
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, path)
                return
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise Conflict(
                    f"Key {key!r} collides with another key's folder or file in the local store."
                ) from None
            except FileNotFoundError:
                # A concurrent delete pruned the emptied parent between mkdir and rename.
                if attempt == 2:
                    raise

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        self._prune(path.parent)
        return True

    def _prune(self, folder: Path) -> None:
        # Empty folders are not objects; dropping them keeps the tree as flat as S3's.
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                return
            folder = folder.parent

    def _delete_prefix(self, prefix: str) -> int:
        return sum(self._delete(self.root / key) for key, _ in list(self._walk(prefix)))

    def _usage(self, prefix: str) -> int:
        total = 0
        for _, entry in self._walk(prefix):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:  # deleted while we walked
                pass
        return total

    def _walk(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(key, entry) of every object whose key starts with `prefix`, in no order."""
        # Start at the deepest folder the prefix names in full; the rest is a name prefix.
        base = prefix.rpartition("/")[0]
        if base.split("/", 1)[0] == TMP_DIR:
            return
        start = self.root / base if base else self.root
        yield from self._scan(start, f"{base}/" if base else "", prefix)

    def _scan(
        self, folder: Path, key_prefix: str, prefix: str
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = key_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if key == TMP_DIR or not f"{key}/".startswith(prefix[: len(key) + 1]):
                    continue
                yield from self._scan(Path(entry.path), f"{key}/", prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                yield key, entry
