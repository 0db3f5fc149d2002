"""The pooled HTTP client a distributed gateway uses to reach another service's internal API
(search, analytics): base URL, bearer token, timeout, start/stop and the readiness probe."""
from __future__ import annotations

import httpx

from magpie.common.errors import Unavailable


class InternalClient:
    """One pooled HTTP/1.1 client per process for one service's internal API."""

    service = "internal"  # named in errors: "the search client is not started"

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limits: httpx.Limits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._transport = transport  # None: the network; an ASGI transport runs it in-process
        self._limits = limits or httpx.Limits()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the connection pool (connections are made on first use)."""
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout,
                                         headers=self._headers, transport=self._transport,
                                         limits=self._limits)

    async def stop(self) -> None:
        """Close the pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> bool:
        """Whether the service answers its readiness probe."""
        try:
            return (await self._http().get("/ready")).status_code == 200
        except (httpx.HTTPError, Unavailable):
            return False

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise Unavailable(f"the {self.service} client is not started")
        return self._client
