"""The gateway's FastAPI application factory."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from magpie.common.heap import freeze_startup_heap
from magpie.common.pipeline import name_default_executor
from magpie.common.settings import Settings, get_settings
from magpie.gateway import dashboard, errors
from magpie.gateway.api import admin, data, health, public, reports, search, tracking, uploads
from magpie.gateway.api import sftp as sftp_api
from magpie.gateway.api import widgets
from magpie.gateway.metrics import ApiUsage, HttpMetrics, RequestMiddleware, flush_usage

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; adapters open in the lifespan, never at import time."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from magpie.gateway.bootstrap import container

        name_default_executor(asyncio.get_running_loop())  # tells the I/O threads apart in top -H
        async with container(settings) as c:
            app.state.container = c
            stop = asyncio.Event()
            flusher = asyncio.create_task(flush_usage(app.state.api_usage, c.analytics, stop))
            app.state.metrics.gc.install()
            if settings.gc_freeze:
                frozen = freeze_startup_heap()
                log.info("froze %d start-up objects out of the collector's walks", frozen)
            try:
                yield
            finally:
                app.state.metrics.gc.uninstall()
                stop.set()
                await flusher  # before the analytics store closes

    app = FastAPI(
        title="Magpie",
        version="0.1.0",
        summary="Self-hosted visual search for e-commerce, compatible with the ViSearch API.",
        lifespan=lifespan,
    )
    app.state.metrics = HttpMetrics()
    app.state.api_usage = ApiUsage()
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics, usage=app.state.api_usage)
    app.add_middleware(widgets.PublicCors)  # outermost: preflights never reach the routes
    errors.install(app)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(public.router)
    app.include_router(data.router)
    app.include_router(tracking.router)
    app.include_router(reports.router)
    app.include_router(uploads.router)
    app.include_router(sftp_api.router)
    app.include_router(search.router)
    app.include_router(dashboard.router)
    app.include_router(widgets.router)
    app.mount(dashboard.STATIC_PATH, dashboard.static_files(), name="dashboard-static")
    return app
