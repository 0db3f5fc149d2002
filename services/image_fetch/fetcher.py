"""Download `im_url`s safely: network policy on every hop, bounded size, time and concurrency."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

import httpcore
import httpx

from magpie.common.errors import DownloadFailed

from .netpolicy import IPNetwork, check_url, parse_networks, resolve_checked

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A server asking us to wait longer than this is treated as if it asked for this long.
MAX_RETRY_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch produced; `content` is None when the server answered 304."""

    status: Literal["ok", "not_modified"]
    content: bytes | None
    etag: str | None
    last_modified: str | None
    final_url: str


class _Retry(Exception):
    """A transient failure of one attempt: worth another try after `delay` seconds."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


@dataclass(slots=True)
class _Redirect:
    location: str


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves every connection's host itself, checks the addresses, then connects to one.

    Checking inside connect (rather than before the request) means the address we judged is
    the address we connect to, so a DNS answer that changes between check and use
    (rebinding) cannot slip a private address past the policy.
    """

    def __init__(self, *, allow_private: bool, allowed: Sequence[IPNetwork]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._allowed = allowed

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_checked(host, port, allow_private=self._allow_private,
                                              allowed=self._allowed, timeout=timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"resolving {host} failed: {exc}") from None
        error: Exception | None = None
        for address in addresses[:4]:  # a few addresses, so one dead one is not fatal
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded backend under its connection pool."""

    def __init__(self, *, backend: httpcore.AsyncNetworkBackend, limits: httpx.Limits,
                 ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx has no public hook for the network backend; its pool is the one place to
        # put it. tests/integration/test_fetcher.py fails loudly if this stops working.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class _HostSlots:
    """One semaphore per host, created on demand and dropped when nobody holds or awaits it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.setdefault(host, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._slots[host]


def _tls_verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        date = parsedate_to_datetime(response.headers.get("date", value))
        return max(0.0, (when - date).total_seconds())
    except (TypeError, ValueError):
        return None


class ImageFetcher:
    """Downloads images under the network policy; one instance per process, shared by handlers."""

    def __init__(self, *, max_bytes: int = 20 * 1024 * 1024, connect_timeout_s: float = 5,
                 read_timeout_s: float = 15, total_timeout_s: float = 30, max_redirects: int = 5,
                 retries: int = 2, backoff_s: float = 0.5, global_concurrency: int = 64,
                 per_host_concurrency: int = 8, allow_private: bool = False,
                 allowed_networks: Iterable[str | IPNetwork] = (),
                 ssl_context: ssl.SSLContext | None = None,
                 user_agent: str = "Magpie/0.1") -> None:
        self.max_bytes = max_bytes
        self.total_timeout_s = total_timeout_s
        self.max_redirects = max_redirects
        self.retries = retries
        self.backoff_s = backoff_s
        self.allow_private = allow_private
        self.allowed_networks = parse_networks(allowed_networks)
        self._timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s,
                                      write=read_timeout_s, pool=connect_timeout_s)
        self._limits = httpx.Limits(max_connections=global_concurrency,
                                    max_keepalive_connections=min(global_concurrency, 32))
        self._ssl_context = ssl_context
        self._user_agent = user_agent
        self._global = asyncio.Semaphore(global_concurrency)
        self._hosts = _HostSlots(per_host_concurrency)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the shared HTTP client (idempotent)."""
        if self._client is not None:
            return
        # httpx logs every request at INFO: a line per image of every ingest. Failures are
        # reported per item (and logged here at WARNING) instead.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        backend = _GuardedBackend(allow_private=self.allow_private, allowed=self.allowed_networks)
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(backend=backend, limits=self._limits,
                                        ssl_context=self._ssl_context),
            timeout=self._timeout, follow_redirects=False, trust_env=False,
            headers={"User-Agent": self._user_agent, "Accept": "image/*,*/*;q=0.8"})

    async def stop(self) -> None:
        """Close the shared HTTP client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> ImageFetcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def fetch(self, url: str, *, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        """Download `url`, or learn it is unchanged (304) when `etag`/`last_modified` are given.

        Raises DownloadFailed (201) for anything that stops the download, with the reason.
        """
        if self._client is None:
            raise RuntimeError("ImageFetcher.start() has not been called")
        target = check_url(url, self.allow_private, allowed=self.allowed_networks)
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        # The whole fetch (redirects and retries included) holds one slot of its im_url's host
        # and one global slot. Host first: waiting for a busy host must not pin a global slot,
        # or one slow host would starve every other.
        async with self._hosts.hold(target.host.lower()), self._global:
            try:
                # The clock starts once we hold our slots: queueing behind other fetches is
                # not this host's fault.
                async with asyncio.timeout(self.total_timeout_s):
                    return await self._follow(url, headers, etag, last_modified)
            except TimeoutError:
                limit = f"{self.total_timeout_s:g} s"
                raise DownloadFailed(f"im_url did not finish downloading within {limit}") from None

    async def _follow(self, url: str, headers: dict[str, str], etag: str | None,
                      last_modified: str | None) -> FetchResult:
        current = url
        for hop in range(self.max_redirects + 1):
            try:
                if hop:
                    check_url(current, self.allow_private, allowed=self.allowed_networks)
                outcome = await self._with_retries(current, headers, etag, last_modified)
            except DownloadFailed as exc:
                if not hop:
                    raise
                raise DownloadFailed(f"{exc.detail} (after a redirect to {current})") from None
            if isinstance(outcome, FetchResult):
                return outcome
            current = outcome.location
        raise DownloadFailed(f"im_url redirected more than {self.max_redirects} times")

    async def _with_retries(self, url: str, headers: dict[str, str], etag: str | None,
                            last_modified: str | None) -> FetchResult | _Redirect:
        for attempt in range(self.retries + 1):
            try:
                return await self._attempt(url, headers, etag, last_modified)
            except _Retry as retry:
                if attempt == self.retries:
                    tries = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                    raise DownloadFailed(f"{retry.reason} (gave up after {tries})") from None
                delay = self.backoff_s * 2 ** attempt
                if retry.delay is not None:
                    delay = max(delay, min(retry.delay, MAX_RETRY_AFTER_S))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(self, url: str, headers: dict[str, str], etag: str | None,
                       last_modified: str | None) -> FetchResult | _Redirect:
        assert self._client is not None
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                return await self._read(response, bool(headers), etag, last_modified)
        except httpx.TimeoutException as exc:
            phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
            raise _Retry(f"im_url timed out ({phase})") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if bad_certificate := _tls_verification_error(exc):
                # Trying again will not make the certificate valid.
                raise DownloadFailed(f"im_url TLS certificate is not valid: "
                                     f"{bad_certificate.verify_message}") from None
            raise _Retry(f"im_url connection failed: {exc or type(exc).__name__}") from None
        except httpx.InvalidURL as exc:
            raise DownloadFailed(f"im_url is not a valid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"im_url could not be downloaded: {exc or type(exc).__name__}"
                                 ) from None

    async def _read(self, response: httpx.Response, conditional: bool, etag: str | None,
                    last_modified: str | None) -> FetchResult | _Redirect:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise DownloadFailed(f"im_url answered HTTP {status} without a Location")
            return _Redirect(str(response.url.join(location)))
        if status == 304 and conditional:
            return FetchResult("not_modified", None, response.headers.get("etag", etag),
                               response.headers.get("last-modified", last_modified),
                               str(response.url))
        if status == 429 or status >= 500:
            raise _Retry(f"im_url answered HTTP {status}", _retry_after(response))
        if not 200 <= status < 300:
            raise DownloadFailed(f"im_url answered HTTP {status}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise DownloadFailed(f"image is {int(declared)} bytes, over the limit of "
                                 f"{self.max_bytes} bytes (Content-Length)")
        body = bytearray()
        # Decoded bytes are counted, so a small gzip body cannot inflate past the cap either.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise DownloadFailed(f"image is over the limit of {self.max_bytes} bytes")
        return FetchResult("ok", bytes(body), response.headers.get("etag"),
                           response.headers.get("last-modified"), str(response.url))
