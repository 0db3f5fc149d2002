"""image-fetch's composition root: the fetcher from settings, and its subscriptions."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemAccepted
from magpie.common.ports import Bus
from magpie.common.service_runtime import Service
from magpie.common.settings import Settings
from magpie.image_fetch.handlers import FetchDeps, on_application_deleted, on_item_accepted

GROUP = "image-fetch"


def build_fetcher(settings: Settings):  # noqa: ANN201 - ImageFetcher, imported lazily
    """An ImageFetcher configured by the `image_fetch_*` settings (not started)."""
    from magpie.image_fetch.fetcher import ImageFetcher

    return ImageFetcher(
        max_bytes=settings.image_fetch_max_bytes,
        connect_timeout_s=settings.image_fetch_connect_timeout_s,
        read_timeout_s=settings.image_fetch_read_timeout_s,
        total_timeout_s=settings.image_fetch_total_timeout_s,
        max_redirects=settings.image_fetch_max_redirects,
        retries=settings.image_fetch_retries,
        backoff_s=settings.image_fetch_backoff_s,
        global_concurrency=settings.image_fetch_global_concurrency,
        per_host_concurrency=settings.image_fetch_per_host_concurrency,
        allow_private=settings.allow_private_image_urls,
    )


def subscribe(bus: Bus, deps: FetchDeps) -> None:
    """The stage's subscriptions."""
    bus.subscribe(ItemAccepted, GROUP, partial(on_item_accepted, deps=deps))
    bus.subscribe(ApplicationDeleted, GROUP, partial(on_application_deleted, objects=deps.objects))


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The image-fetch stage alone (`magpie run image-fetch`): no database, no model."""
    from magpie.common.adapters import build_bus, build_object_store, object_store_probe

    from magpie.common.pipeline import ingest_pool

    objects, fetcher = build_object_store(settings), build_fetcher(settings)
    pool = ingest_pool(idle=settings.ingest_idle)
    bus = build_bus(settings, client_id="magpie-image-fetch")
    await objects.start()
    await fetcher.start()
    subscribe(bus, FetchDeps(fetcher=fetcher, objects=objects, bus=bus, min_side=settings.image_min_side,
                             executor=pool))
    try:
        await bus.start()
        yield Service("image-fetch", bus=bus, checks={"object_store": object_store_probe(objects)})
    finally:
        await bus.stop()  # first: in-flight downloads still need the fetcher and the store
        await fetcher.stop()
        pool.shutdown(wait=False)
        await objects.stop()
