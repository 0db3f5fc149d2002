"""A distributed service process's HTTP side and life: /health, /ready, /metrics and any
internal API; open the composition root, serve, drain on SIGTERM.

A service's composition root (`service(settings)` in its `bootstrap`) is an async context
manager that yields a `Service`; uvicorn runs the HTTP side and turns SIGTERM/SIGINT into a
graceful stop: it stops accepting requests, finishes the ones in flight, then leaves the
context, where the bus stops its consumers (in-flight records finish and are committed) and
every adapter closes. Imported only by `magpie run`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from magpie.common.errors import InvalidCredentials, InvalidRequest, MagpieError
from magpie.common.heap import GcPauses, freeze_startup_heap
from magpie.common.pipeline import name_default_executor
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings

log = logging.getLogger(__name__)


OpenService = Callable[[Settings], AbstractAsyncContextManager[Service]]


def service_app(name: str, settings: Settings, open_service: OpenService,
                routers: list[APIRouter] | None = None) -> FastAPI:
    """The service's HTTP side; the composition root opens in the lifespan."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        name_default_executor(asyncio.get_running_loop())
        async with open_service(settings) as svc:
            app.state.service = svc
            app.state.gc.install()
            if settings.gc_freeze:
                freeze_startup_heap()
            svc.ready = True
            log.info("%s service ready", name)
            try:
                yield
            finally:
                app.state.gc.uninstall()
                svc.ready = False
                log.info("%s service stopping: draining in-flight work", name)

    app = FastAPI(title=f"Magpie {name}", version="0.1.0", lifespan=lifespan)
    app.state.gc = GcPauses(CollectorRegistry())
    _install_errors(app)
    _ops_routes(app)
    guard = [Depends(internal_auth(settings.internal_token.get_secret_value()))] \
        if settings.internal_token else []
    for router in routers or ():
        app.include_router(router, dependencies=guard)
    return app


def internal_auth(token: str) -> Callable[[Request], None]:
    """A dependency that lets through only requests bearing the shared internal token."""
    expected = f"Bearer {token}".encode()

    def check(request: Request) -> None:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            raise InvalidCredentials("The internal API wants the shared MAGPIE_INTERNAL_TOKEN.")

    return check


def _ops_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready(request: Request) -> JSONResponse:
        """Readiness: the service started and its dependencies answer."""
        svc: Service | None = getattr(request.app.state, "service", None)
        checks = await svc.check() if svc else {"service": "starting"}
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
        if svc is not None and hasattr(svc.bus, "assigned_partitions"):
            body["partitions"] = {f"{t}/{g}": sorted(p)
                                  for (t, g), p in svc.bus.assigned_partitions().items()}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        """Prometheus exposition: records handled and dead-lettered, partitions held, GC pauses."""
        svc: Service | None = getattr(request.app.state, "service", None)
        body, ctype = render_bus_metrics(svc.bus if svc else None)
        return Response(body + generate_latest(request.app.state.gc.registry), media_type=ctype)


def render_bus_metrics(bus: Any) -> tuple[bytes, str]:
    """The bus counters in the Prometheus text format."""
    registry = CollectorRegistry()
    handled = Counter("magpie_bus_records", "Bus records handled (done or dead-lettered)",
                      ["topic", "group"], registry=registry)
    dead = Counter("magpie_bus_dead_letters", "Bus records sent to a dead-letter topic",
                   ["topic", "group"], registry=registry)
    held = Gauge("magpie_bus_partitions", "Partitions this process holds", ["topic", "group"],
                 registry=registry)
    for (topic, group), n in getattr(bus, "handled", {}).items():
        handled.labels(topic, group).inc(n)
    for (topic, group), n in getattr(bus, "dead_lettered", {}).items():
        dead.labels(topic, group).inc(n)
    if hasattr(bus, "assigned_partitions"):
        for (topic, group), parts in bus.assigned_partitions().items():
            held.labels(topic, group).set(len(parts))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _install_errors(app: FastAPI) -> None:
    """Typed errors become `{"error": {"type", "detail"}}` with their HTTP status: the
    internal APIs' one format, which the gateway's clients turn back into the same errors."""
    def render(exc: MagpieError) -> JSONResponse:
        return JSONResponse({"error": {"type": type(exc).__name__, "detail": exc.detail}},
                            status_code=exc.http_status)

    @app.exception_handler(MagpieError)
    async def _typed(request: Request, exc: MagpieError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Still the one format, so a client turns it into its typed error (Unavailable).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(MagpieError())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return render(InvalidRequest(f"{where}: {first.get('msg', 'invalid')}"))


def serve(app: FastAPI, host: str, port: int, graceful_timeout_s: float) -> None:
    """Run `app` until SIGTERM/SIGINT, then shut down gracefully."""
    uvicorn.run(app, host=host, port=port, log_config=None,
                timeout_graceful_shutdown=max(1, int(graceful_timeout_s)))
