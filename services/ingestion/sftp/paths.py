"""What an SFTP client may reach: its application's folder, and may write: only `/indexing`.

Client paths are virtual, rooted at `<data_dir>/sftp/<app_id>/`. A path that climbs above
that root with `..`, names a folder other than the feed folders, or resolves (through a
symbolic link) outside the root is refused, never silently clamped.
"""
from __future__ import annotations

import os

FOLDERS = ("indexing", "processing", "processed", "failed")
UPLOAD_FOLDER = "indexing"
MAX_FILE_NAME = 255


class PathRefused(Exception):
    """A client path outside what the account may reach; the message is shown to the client."""


def normalize(virtual: str) -> str:
    """`virtual` as an absolute path without `.`/`..`; PathRefused if it leaves the root."""
    if "\x00" in virtual:
        raise PathRefused("Path refused: it contains a NUL byte.")
    parts: list[str] = []
    for comp in virtual.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise PathRefused("Path refused: '..' would leave your folder.")
            parts.pop()
        else:
            parts.append(comp)
    if parts and parts[0] not in FOLDERS:
        raise PathRefused(f"Path refused: only /{', /'.join(FOLDERS)} exist here; "
                          "upload feeds to /indexing.")
    return "/" + "/".join(parts)


def local_path(root: str, virtual: str) -> str:
    """The local path of client path `virtual` under `root` (a real path), links checked."""
    local = os.path.join(root, normalize(virtual).lstrip("/"))
    real = os.path.realpath(local)
    if real != root and not real.startswith(root + os.sep):
        raise PathRefused("Path refused: it leads outside your folder through a link.")
    return local


def upload_name(virtual: str) -> str:
    """The file name of a path a client may create or change: `/indexing/<name>`, else PathRefused."""
    parts = normalize(virtual).strip("/").split("/")
    if len(parts) != 2 or parts[0] != UPLOAD_FOLDER:
        raise PathRefused("Permission denied: files can only be uploaded to /indexing "
                          "(no sub-folders); the other folders are read-only.")
    if len(parts[1].encode()) > MAX_FILE_NAME:
        raise PathRefused(f"The file name is longer than {MAX_FILE_NAME} bytes.")
    return parts[1]
