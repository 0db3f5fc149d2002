"""What the sync and async clients share around a send: credentials, retry policy, answers."""
from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from magpie_sdk._ops import Request
from magpie_sdk.errors import (
    APIError,
    ConfigurationError,
    InvalidRequestError,
    error_from_body,
    is_item_failure,
)

SDK_NAME = "magpie-python"
SDK_VERSION = "0.1.0"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_RETRY_AFTER_S = 30.0


@dataclass
class Credentials:
    """What a client may authenticate with; any part may be missing."""

    access_key: str | None = None
    secret_key: str | None = None
    app_key: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to `backoff * 2**n` seconds,
    at most `max_backoff`; a server's Retry-After is honoured up to 30 s."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))


def new_id() -> str:
    """A random 32-character id (the tracking API's uid and sid limit)."""
    return uuid.uuid4().hex


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def build(req: Request, creds: Credentials) -> dict[str, Any]:
    """httpx.request keyword arguments for `req`, authenticated as its kind asks."""
    headers = {"X-Requested-With": f"{SDK_NAME}/{SDK_VERSION}"}
    params = list(req.params)
    if req.auth == "keys" or (req.auth == "search" and creds.secret_key):
        if not (creds.access_key and creds.secret_key):
            raise ConfigurationError(f"{req.path} needs access_key and secret_key.")
        headers["Authorization"] = _basic(creds.access_key, creds.secret_key)
    elif req.auth == "search":
        if not creds.app_key:
            raise ConfigurationError(f"{req.path} needs an app_key, or access_key and secret_key.")
        params.append(("access_key", creds.app_key))
    elif req.auth == "tracking":
        if not creds.app_key:
            raise ConfigurationError("Tracking needs the application's app_key.")
        params.append(("code", creds.app_key))
    elif req.auth == "admin":
        if not creds.token:
            raise ConfigurationError("Sign in first: admin.sign_in(email, password).")
        headers["Authorization"] = f"Bearer {creds.token}"
    kw: dict[str, Any] = {"method": req.method, "url": req.path, "headers": headers, "params": params}
    if req.json is not None:
        kw["json"] = req.json
    if req.files:
        kw["files"] = req.files
        kw["data"] = _multidict(req.data or [])
    elif req.data is not None:
        kw["data"] = _multidict(req.data)
    return kw


def _multidict(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form pairs as httpx takes them (a repeated key becomes a list)."""
    out: dict[str, str | list[str]] = {}
    for key, value in pairs:
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def should_retry(req: Request, error: BaseException) -> bool:
    """Connect errors (nothing reached the server) retry any call; timeouts, 5xx, 429 and a
    busy server only calls that are safe to repeat."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if isinstance(error, httpx.TransportError):
        return req.idempotent
    return isinstance(error, APIError) and error.retryable and req.idempotent


def decode(req: Request, response: httpx.Response) -> Any:
    """The answer's body, or the typed exception for a failed call."""
    reqid = response.headers.get("x-log-id")
    if req.family == "pixel":
        if response.status_code >= 400 or response.headers.get("x-tracking") == "rejected":
            reason = response.headers.get("x-tracking-error") or f"HTTP {response.status_code}"
            if response.status_code >= 400:
                err = error_from_body(response.status_code, reason, reqid)
                err.retry_after = response.headers.get("retry-after")
                raise err
            raise InvalidRequestError(reason, code=400, status_code=200, reqid=reqid)
        return None
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code == 204:
        return None
    failed = response.status_code >= 400 or (isinstance(body, dict) and body.get("status") == "fail")
    if failed and not (response.status_code < 400 and isinstance(body, dict) and is_item_failure(body)):
        err = error_from_body(response.status_code, body, reqid)
        err.retry_after = response.headers.get("retry-after")
        raise err
    if isinstance(body, dict) and reqid and "reqid" not in body and req.family == "legacy":
        body["reqid"] = reqid  # as the official SDKs do: the header is the request id too
    return body


def retry_after(error: BaseException) -> str | None:
    """The Retry-After of a refused answer, when there was one."""
    return error.retry_after if isinstance(error, APIError) else None
