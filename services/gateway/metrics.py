"""Prometheus metrics of the HTTP API, and request logging with a request id."""
from __future__ import annotations

import logging
import time
import uuid

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMiddleware:
    """Times, counts and logs each request; gives it an id sent back as `X-Log-ID`.

    Plain ASGI rather than BaseHTTPMiddleware so streaming responses are not buffered.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

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
            log.info("%s %s %s %.1fms", scope["method"], scope["path"], status, elapsed * 1000)
            structlog.contextvars.unbind_contextvars("reqid")
