"""Prometheus metrics of the HTTP API, and request logging with a request id."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from magpie.common.heap import GcPauses

log = logging.getLogger("magpie.http")


class HttpMetrics:
    """Request counters and latency histograms in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("magpie_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("magpie_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.gc = GcPauses(self.registry)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ApiUsage:
    """API calls per (application, day, endpoint), counted in memory and drained to the
    analytics store every few seconds by the gateway's lifespan."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}

    def record(self, app_id: str, endpoint: str) -> None:
        """Count one call."""
        key = (app_id, datetime.now(UTC).date().isoformat(), endpoint)
        self._counts[key] = self._counts.get(key, 0) + 1

    def drain(self) -> dict[tuple[str, str, str], int]:
        """The counts so far, and start again from zero."""
        counts, self._counts = self._counts, {}
        return counts


async def flush_usage(usage: ApiUsage, store, stop: asyncio.Event, interval_s: float = 5.0) -> None:  # noqa: ANN001
    """Drain the counts into the analytics store until `stop`, then once more."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        counts = usage.drain()
        if counts:
            try:
                await store.insert_api_calls(counts)
            except Exception:  # noqa: BLE001 - usage counting must never take the gateway down
                log.exception("could not store %d API call counts", len(counts))


class RequestMiddleware:
    """Times, counts and logs each request; gives it an id sent back as `X-Log-ID`.

    Plain ASGI rather than BaseHTTPMiddleware so streaming responses are not buffered.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, usage: ApiUsage | None = None) -> None:
        self.app, self.metrics, self.usage = app, metrics, usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reqid = uuid.uuid4().hex
        scope.setdefault("state", {})["reqid"] = reqid
        structlog.contextvars.bind_contextvars(reqid=reqid)
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-log-id", reqid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            app_id = scope["state"].get("app_id")
            if app_id and self.usage is not None:
                self.usage.record(app_id, route)
            log.info("%s %s %s %.1fms", scope["method"], scope["path"], status, elapsed * 1000)
            structlog.contextvars.unbind_contextvars("reqid")
