"""Typed exceptions, and the one place an answer of the server becomes one of them.

Magpie answers errors in three shapes (see the server's README, APIs): the ViSearch routes
answer HTTP 200 with `status: "fail"` and an `error` list (strings for searches, objects with
`error_code` for the Data API), the JSON API (`/v1`) an `error: {code, message}` object with a
real HTTP status, and the admin API RFC 9457 problem JSON. Every shape ends up here.
"""
from __future__ import annotations

from typing import Any

# HTTP statuses a retry may cure: the server or a proxy in front of it is busy or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Legacy search errors are plain strings; the official Java SDK maps them back to codes by
# their message (ResponseMessages). Magpie's messages start with the reference's text.
SEARCH_MESSAGES: tuple[tuple[str, int], ...] = (
    ("Invalid access key or secret key", 11),
    ("Unauthorized", 12),
    ("This key is search-only", 12),
    ("System busy", 31),
    ("System error", 32),
    ("Image not found with im_name", 1101),
    ("Invalid image file format", 1102),
    ("The image file is larger than", 1102),
    ("The image format or dimension is invalid", 1103),
    ("Invalid image or im_url", 1104),
    ("Could not download the image", 1105),
    ("Timeout while downloading image", 1106),
    ("App doesn't have any images", 1107),
    ("Missing im_url or im_id", 1111),
    ("Missing im_id", 1110),
)
_NOT_FOUND_CODES = frozenset({101, 102, 404, 1101, 1107, 1110})
_SERVER_CODES = frozenset({31, 32, 1105, 1106})


class MagpieError(Exception):
    """Base of every exception the SDK raises."""


class ConfigurationError(MagpieError):
    """The client lacks what a call needs (a secret key, an app key, a sign-in)."""


class TransportError(MagpieError):
    """The server could not be reached or did not answer in time, retries included."""


class TransactionTimeout(MagpieError):
    """A wait for transactions to finish ran out of time; `pending` lists those unfinished."""

    def __init__(self, message: str, pending: list[int]) -> None:
        super().__init__(message)
        self.pending = pending


class APIError(MagpieError):
    """The server refused a call: `code` (the API's error code), `message`, `status_code` (HTTP),
    `method` (the API method), `reqid` (the request id, `X-Log-ID`), `field` (a schema field the
    admin API names) and `body` (the decoded answer)."""

    def __init__(self, message: str, *, code: int | None = None, status_code: int = 200,
                 method: str | None = None, reqid: str | None = None, field: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{message} (code {code})" if code is not None else message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.method = method
        self.reqid = reqid
        self.field = field
        self.body = body
        self.retry_after: str | None = None  # the answer's Retry-After, for the retry loop

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later (busy server, 5xx, 429)."""
        return self.status_code in RETRY_STATUSES or self.code == 31


class AuthenticationError(APIError):
    """Bad or revoked keys, or no valid admin session (401, code 11)."""


class PermissionDeniedError(APIError):
    """The key or member may not do this, e.g. a search-only key on a data route (403, code 12)."""


class NotFoundError(APIError):
    """An unknown trans_id (101), im_name (102, 1101), im_id (1110), application or route."""


class InvalidRequestError(APIError):
    """The request itself is wrong: a parameter, a batch over 100, a bad image (400, 103-109,
    1102-1104, 1111)."""


class ConflictError(APIError):
    """The change conflicts with the current state (409)."""


class RateLimitError(APIError):
    """Too many requests (429)."""


class ServerError(APIError):
    """The server failed or is busy (5xx, codes 31 and 32), or a query image could not be
    downloaded (1105, 1106)."""


def code_of_message(message: str) -> int | None:
    """The ViSearch code of a legacy search error string, when the message is a known one."""
    for prefix, code in SEARCH_MESSAGES:
        if message.startswith(prefix):
            return code
    return None


def error_class(status_code: int, code: int | None) -> type[APIError]:
    """The exception class for an HTTP status and an API error code."""
    if code == 11 or status_code == 401:
        return AuthenticationError
    if code == 12 or status_code == 403:
        return PermissionDeniedError
    if status_code == 429:
        return RateLimitError
    if code in _SERVER_CODES or status_code >= 500:
        return ServerError
    if code in _NOT_FOUND_CODES or status_code == 404:
        return NotFoundError
    if status_code == 409:
        return ConflictError
    return InvalidRequestError


def make_error(message: str, *, status_code: int, code: int | None = None, **kw: Any) -> APIError:
    """An APIError of the right class."""
    return error_class(status_code, code)(message, code=code, status_code=status_code, **kw)


def _first_error(error: Any) -> tuple[str, int | None]:
    """(message, code) of an `error` member in any of the server's shapes."""
    if isinstance(error, dict):  # /v1: {code, message}
        return str(error.get("message") or error.get("error_message") or "Request failed."), \
            error.get("code", error.get("error_code"))
    if isinstance(error, list) and error:
        first = error[0]
        if isinstance(first, dict):  # Data API and tracking: [{error_code, error_message}]
            return str(first.get("error_message", "Request failed.")), first.get("error_code")
        return str(first), code_of_message(str(first))  # legacy search: ["message"]
    return "Request failed.", None


def error_from_body(status_code: int, body: Any, reqid: str | None = None) -> APIError:
    """The exception for a failed answer, whatever the route family."""
    if not isinstance(body, dict):
        text = body if isinstance(body, str) and body else f"HTTP {status_code}"
        return make_error(text[:500], status_code=status_code, reqid=reqid, body=body)
    if "detail" in body and "title" in body:  # admin API: problem JSON
        return make_error(str(body.get("detail")), status_code=status_code, code=body.get("code"),
                          field=body.get("field"), reqid=reqid, body=body)
    message, code = _first_error(body.get("error"))
    if code is None and status_code >= 400:
        code = status_code if status_code in (400, 404, 409) else None
    return make_error(message, status_code=status_code, code=code, method=body.get("method"),
                      reqid=body.get("reqid") or reqid, body=body)


def is_item_failure(body: dict[str, Any]) -> bool:
    """A Data API or tracking answer whose errors are all per item (each names its `index`):
    that is a result to report, not an exception."""
    errors = body.get("error")
    return bool(errors) and isinstance(errors, list) and all(
        isinstance(e, dict) and "index" in e for e in errors)
