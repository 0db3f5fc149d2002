"""`magpie run SERVICE`: one Magpie service in its own process, on the Kafka bus."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum

import typer


class ServiceName(StrEnum):
    GATEWAY = "gateway"
    INGESTION = "ingestion"
    IMAGE_FETCH = "image-fetch"
    EMBEDDING = "embedding"
    SEARCH = "search"
    ANALYTICS = "analytics"
    SFTP = "sftp"


@dataclass(frozen=True)
class Spec:
    """Where a service's composition root lives, its port setting and its internal API."""

    root: str  # "module:function", an async context manager of Settings yielding a Service
    port_setting: str
    routers: tuple[str, ...] = ()


SERVICES: dict[ServiceName, Spec] = {
    ServiceName.INGESTION: Spec("magpie.ingestion.bootstrap:service", "ingestion_port"),
    ServiceName.IMAGE_FETCH: Spec("magpie.image_fetch.bootstrap:service", "image_fetch_port"),
    ServiceName.EMBEDDING: Spec("magpie.embedding.bootstrap:service", "embedding_port"),
    ServiceName.SEARCH: Spec("magpie.search.bootstrap:service", "search_port",
                             ("magpie.search.http_api:router",)),
    ServiceName.ANALYTICS: Spec("magpie.analytics.bootstrap:service", "analytics_port",
                                ("magpie.analytics.http_api:router",)),
    ServiceName.SFTP: Spec("magpie.ingestion.bootstrap:sftp_service", "sftp_health_port"),
}


def _load(ref: str):  # noqa: ANN202 - whatever the reference names
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def run(
    service: ServiceName = typer.Argument(..., help="Which service this process runs."),
    host: str | None = typer.Option(None, help="Overrides MAGPIE_HOST."),
    port: int | None = typer.Option(None, help="Overrides the service's port setting "
                                    "(MAGPIE_PORT for the gateway, MAGPIE_<SERVICE>_PORT otherwise)."),
) -> None:
    """Run one service of the distributed mode (MAGPIE_BUS=kafka): its consumers in their own
    consumer group, /health, /ready and /metrics on its port; SIGTERM drains and commits."""
    from magpie.common.logging import configure_logging
    from magpie.common.settings import BusKind, Settings

    settings = Settings(distributed=True, **({"host": host} if host else {}))
    if settings.bus is not BusKind.KAFKA:
        typer.echo("magpie run needs MAGPIE_BUS=kafka: the services meet on the Kafka bus "
                   "(`magpie serve` runs all of them in one process).", err=True)
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_json)
    if service is ServiceName.GATEWAY:
        _run_gateway(settings, port)
        return
    from magpie.common.service_http import serve, service_app

    spec = SERVICES[service]
    if port is not None:
        settings = settings.model_copy(update={spec.port_setting: port})
    app = service_app(service.value, settings, _load(spec.root), [_load(r) for r in spec.routers])
    serve(app, settings.host, getattr(settings, spec.port_setting), settings.bus_shutdown_timeout_s)


def _run_gateway(settings, port: int | None) -> None:  # noqa: ANN001
    """The gateway: the public API, dashboard and control plane; no consumers."""
    import uvicorn

    from magpie.gateway.app import create_app

    if port is not None:
        settings = settings.model_copy(update={"port": port})
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                proxy_headers=True, timeout_graceful_shutdown=max(1, int(settings.bus_shutdown_timeout_s)))
