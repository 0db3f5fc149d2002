"""image-fetch's composition root: the fetcher from settings, and its subscriptions."""
from __future__ import annotations

from functools import partial

from magpie.common.events.control import ApplicationDeleted
from magpie.common.events.ingest import ItemAccepted
from magpie.common.ports import Bus
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
