"""One application's projection: fitted from its stored catalog images, kept in the object
store, applied through a model handle (so index and queries share it).

Steps (see the README's retrieval-quality section): `fit_app_projection` reads the stored
images of the indexed items, fits a learned whitening on them and their synthetic views, and
saves it under `projection_key`; `projected` wraps the application's model handle so every
vector it returns is projected and its version names the projection; `magpie reindex` with
that handle then moves the index over (a new dimension: the rebuild path). The running
server takes each application's model through `Models.for_app`, and fits on its own through
`magpie.embedding.auto_projection`.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL.Image import Image

from magpie.common.errors import NotFound, UnsupportedFormat
from magpie.common.ports import ObjectStore
from magpie.embedding.handlers import ModelHandle, _open
from magpie.embedding.projection import (
    DEFAULT_DIMS,
    DEFAULT_VIEWS,
    MIN_ITEMS,
    Projection,
    fit_on_catalog,
)
from magpie.embedding.reindex import ReindexDeps, _pages, _system

SAMPLE = 2000  # catalog images a fit reads at most: enough for a 2,024-d scatter


def projection_key(app_id: str, model: ModelHandle) -> str:
    """Where the projection of `app_id` for the (unprojected) `model` is stored."""
    return f"{app_id}/projection/{model.name}@{model.version}.npz"


def off_key(app_id: str) -> str:
    """The marker that keeps automatic fitting (`auto_projection`) off for one application."""
    return f"{app_id}/projection/auto-off"


def digest_key(app_id: str, model: ModelHandle) -> str:
    """The stored projection's digest beside it: processes look it up instead of re-reading
    the projection (10 MB at 2,408 x 1,024) every time they check for a new one."""
    return projection_key(app_id, model) + ".digest"


async def save_projection(objects: ObjectStore, app_id: str, model: ModelHandle,
                          projection: Projection) -> None:
    """Store `projection` as the application's projection for `model`."""
    await objects.put(projection_key(app_id, model), projection.to_bytes(),
                      "application/octet-stream")
    await objects.put(digest_key(app_id, model), projection.digest.encode(), "text/plain")


async def delete_projection(objects: ObjectStore, app_id: str, model: ModelHandle) -> bool:
    """Remove the application's projection for `model`; whether there was one."""
    existed = await objects.exists(projection_key(app_id, model))
    await objects.delete(digest_key(app_id, model))  # first: a reader never sees it alone
    await objects.delete(projection_key(app_id, model))
    return existed


async def stored_digest(objects: ObjectStore, app_id: str, model: ModelHandle) -> str | None:
    """The digest of the stored projection, None when there is none; read from the small
    digest object (or from the projection itself, stored before digests were)."""
    try:
        return (await objects.get(digest_key(app_id, model))).decode()
    except NotFound:
        pass
    found = await load_projection(objects, app_id, model)
    return None if found is None else found.digest


async def load_projection(objects: ObjectStore, app_id: str,
                          model: ModelHandle) -> Projection | None:
    """The application's stored projection for `model`, or None when none was fitted."""
    try:
        return Projection.from_bytes(await objects.get(projection_key(app_id, model)))
    except NotFound:
        return None


def projected(model: ModelHandle, projection: Projection) -> ModelHandle:
    """`model` with `projection` applied to every vector; its version names the projection,
    so the vector cache and `@sys.model` never mix projected and raw vectors."""

    async def embed(image: object) -> np.ndarray:
        return projection.apply(np.asarray(await model.embed(image), dtype=np.float32))

    return ModelHandle(model.name, f"{model.version}+lw-{projection.digest}", embed,
                       raw=model, projection=projection)


async def catalog_images(app_id: str, deps: ReindexDeps, sample: int = SAMPLE) -> list[Image]:
    """Up to `sample` decoded stored images of the indexed items (unreadable ones skipped)."""
    keys: list[str] = []
    async with contextlib.aclosing(_pages(app_id, deps, 256)) as pages:
        async for points in pages:
            keys += [k for k in (_system(p).get("image_key") for p in points) if k]
            if len(keys) >= sample:
                break
    images = []
    for key in keys[:sample]:
        try:
            images.append(await asyncio.to_thread(_open, await deps.objects.get(key)))
        except (NotFound, UnsupportedFormat):
            continue  # a missing or broken image only makes the sample smaller
    return images


async def fit_app_projection(app_id: str, deps: ReindexDeps,
                             embed: Callable[[Sequence[Image]], np.ndarray], *,
                             sample: int = SAMPLE, views_per_image: int = DEFAULT_VIEWS,
                             dims: int = DEFAULT_DIMS, seed: int = 0,
                             min_items: int = MIN_ITEMS) -> Projection:
    """Fit the learned whitening of `app_id` with `embed` (the raw model behind
    `deps.model`, batch in, vectors out), store it and return it."""
    images = await catalog_images(app_id, deps, sample)
    projection = await asyncio.to_thread(fit_on_catalog, embed, images, views_per_image,
                                         dims, seed, min_items)
    await save_projection(deps.objects, app_id, deps.model, projection)
    return projection


async def projection_status(objects: ObjectStore, app_id: str, model: ModelHandle) -> dict:
    """What the admin API and the CLI show of an application's projection for `model`."""
    found = await load_projection(objects, app_id, model)
    auto = not await objects.exists(off_key(app_id))
    return {"app_id": app_id, "model": f"{model.name}@{model.version}", "auto": auto,
            "projection": None if found is None else {
                "digest": found.digest, "kind": found.kind, "dim": found.dim,
                "items": found.items or None}}
