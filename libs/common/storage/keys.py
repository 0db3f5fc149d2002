"""Object key and prefix validation, shared by every object store adapter.

Both adapters enforce the same rules so that a key accepted by the local folder is accepted
by S3 and maps to the same object (and the reverse):

- a non-empty `str`, relative (no leading `/`), `/`-separated;
- no empty segment (so no `//` and no trailing `/`), no `.` or `..` segment;
- no backslash, NUL or other control character;
- at most 1024 bytes in UTF-8 (S3's limit, which is also at most 1024 characters), each
  segment at most 255 bytes (the file-name limit of common local file systems).

A prefix follows the same rules, except that it may be empty (everything) and may end with
`/` or with a partial segment (`app1/images/ab` matches `app1/images/abc.jpg`).
"""
from __future__ import annotations

import re

from magpie.common.errors import InvalidRequest

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255

# C0 controls and DEL: NUL breaks file systems, the rest break logs and S3 listings' XML.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


def validate_key(key: object) -> str:
    """Return `key` unchanged if it is a valid object key, else raise InvalidRequest."""
    if not isinstance(key, str) or not key:
        raise InvalidRequest(f"Object key must be a non-empty string, got {key!r}.")
    _check(key, key.split("/"), what="key")
    return key


def validate_prefix(prefix: object) -> str:
    """Return `prefix` unchanged if it is a valid listing prefix, else raise InvalidRequest."""
    if not isinstance(prefix, str):
        raise InvalidRequest(f"Object prefix must be a string, got {prefix!r}.")
    if not prefix:
        return prefix
    segments = prefix.split("/")
    # A trailing `/` leaves one empty last segment, which a prefix may have.
    if segments[-1] == "":
        segments = segments[:-1]
    _check(prefix, segments, what="prefix")
    return prefix


def _check(value: str, segments: list[str], *, what: str) -> None:
    if value.startswith("/"):
        raise InvalidRequest(f"Object {what} must be relative (no leading '/'): {value!r}.")
    if _FORBIDDEN.search(value):
        raise InvalidRequest(
            f"Object {what} must not contain a backslash or control character: {value!r}."
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates
        raise InvalidRequest(f"Object {what} is not valid Unicode: {value!r}.") from None
    if size > MAX_KEY_BYTES:
        raise InvalidRequest(f"Object {what} is longer than {MAX_KEY_BYTES} bytes.")
    for segment in segments:
        if segment == "":
            raise InvalidRequest(f"Object {what} has an empty segment: {value!r}.")
        if segment in (".", ".."):
            raise InvalidRequest(f"Object {what} must not contain '.' or '..': {value!r}.")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidRequest(
                f"Object {what} has a segment longer than {MAX_SEGMENT_BYTES} bytes."
            )
