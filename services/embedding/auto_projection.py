"""Each application's catalog projection, fitted on its own and moved in online.

A background task of the standalone server (it holds the model, the object store and the
index in one process). Every `interval` it looks at each application: once its catalog has
`min_items` indexed items and has been at rest for one interval (the same count twice), it
fits a learned whitening on a sample of the stored catalog (views embedded on a low-priority
thread, the catalog's raw vectors read from the index or the vector cache, not embedded
again), then moves the index over with `RebuildableIndex.rebuild`: searches and writes go on
against the raw vectors, writes wait only for the catch-up just before the one swap. It refits when the catalog has grown
to `grow` times the size of the last fit. Just before the swap the projection is stored and
handed to the process's `Models`, so every vector made from then on is projected; a vector
made by the raw model a moment before is projected on its way into the index
(`Models.reprojected`), and a search that met the swap is run again (`magpie.search.query`).

`magpie projection drop` turns it off for one application (a marker in the object store);
`magpie projection fit` turns it back on. An index that is not on its stored projection (a
crash between storing it and the swap) is moved to it at the next look.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from magpie.common.controlplane.schema_provider import AppSchema, SchemaProvider
from magpie.common.errors import MagpieError, NotFound
from magpie.common.pipeline import BULK_WORK
from magpie.common.ports import IndexPoint, ObjectStore
from magpie.embedding.app_projection import (
    SAMPLE, load_projection, off_key, projected, save_projection, stored_digest,
)
from magpie.embedding.handlers import ModelHandle, _open
from magpie.embedding.projection import (
    DEFAULT_DIMS, DEFAULT_VIEWS, MIN_ITEMS, Projection, fit_on_catalog,
)
from magpie.embedding.reindex import ReindexDeps, _system, _vector, model_id
from magpie.search.handlers import SYSTEM_KEY

log = logging.getLogger(__name__)

FIT_MAX_SIDE = 320  # views are 64-320 px: larger catalog images only cost memory in a fit


@dataclass
class AutoProjectionDeps:
    """What the task needs; `models` is the process's `Models` (batchers, projections)."""

    index: Any  # VectorIndex and RebuildableIndex
    objects: ObjectStore
    models: Any
    schemas: SchemaProvider
    app_ids: Callable[[], Awaitable[list[str]]]
    executor: Executor | None = None  # where fits run: a low-priority thread
    min_items: int = 1000
    grow: float = 2.0
    views: int = DEFAULT_VIEWS
    dims: int = DEFAULT_DIMS
    sample: int = SAMPLE
    seen: dict[str, int] = field(default_factory=dict)  # app_id -> count at the last look
    failed: dict[str, int] = field(default_factory=dict)  # app_id -> count its last fit failed at
    halt: threading.Event = field(default_factory=threading.Event)  # stops a fit's thread
    projections: dict[str, Projection] = field(default_factory=dict)  # app_id -> last read


@dataclass(frozen=True)
class Fitted:
    """What one fit did."""

    app_id: str
    model: str
    items: int
    dim: int
    moved: int
    seconds: float


def due(count: int, previous: int | None, fitted: Projection | None, min_items: int,
        grow: float, sample: int) -> bool:
    """Whether to fit now: enough items, the same count as at the last look (the catalog is
    at rest), and no projection yet, or one fitted on a catalog `grow` times smaller whose fit
    did not yet see a full `sample` (later refits would read the same number of images)."""
    if count < min_items or count != previous:
        return False
    if fitted is None:
        return True
    return 0 < fitted.items < grow * sample and count >= grow * fitted.items


async def run(deps: AutoProjectionDeps, stop: asyncio.Event, interval_s: float) -> None:
    """Look at every application each `interval_s` until `stop` is set; a fit in progress
    is abandoned then (its thread stops at its next chunk, the index stays as it was)."""
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            looking = asyncio.create_task(_look(deps, interval_s))
            await asyncio.wait({looking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not looking.done():
                deps.halt.set()
                looking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await looking
    finally:
        stopping.cancel()


async def _look(deps: AutoProjectionDeps, interval_s: float) -> None:
    await asyncio.sleep(interval_s)
    try:
        app_ids = await deps.app_ids()
    except Exception:  # noqa: BLE001 - the control plane may be briefly away
        log.exception("auto projection: could not list applications")
        return
    for app_id in app_ids:
        try:
            done = await check(app_id, deps)
        except Exception:  # noqa: BLE001 - one application's failure stops no other
            log.exception("auto projection: %s failed; its index is unchanged", app_id)
            continue
        if done is not None:
            log.info("auto projection: %s now searches through a projection fitted on %d "
                     "items (%d-d, %d points moved, %.1f s)", app_id, done.items, done.dim,
                     done.moved, done.seconds)


async def check(app_id: str, deps: AutoProjectionDeps) -> Fitted | None:
    """Fit and move `app_id` over when it is due (see `due`); what was done, or None."""
    try:
        schema = await deps.schemas.get(app_id)
    except NotFound:
        deps.seen.pop(app_id, None)
        return None
    count = await deps.index.count(app_id)
    previous, deps.seen[app_id] = deps.seen.get(app_id), count
    if count == 0 or await deps.objects.exists(off_key(app_id)):
        return None
    base = await deps.models.for_type(schema.image_type)
    current = await _current(app_id, deps, base)
    if current is not None and not await _consistent(app_id, deps, base, current):
        # Stored just before a swap that a crash cut short: finish moving the index to it.
        log.warning("auto projection: the index of %s is not on its stored projection (a "
                    "crash before the swap?): moving it now", app_id)
        return await _guarded(app_id, deps, count, move(app_id, schema, base, current, deps))
    if (not due(count, previous, current, deps.min_items, deps.grow, deps.sample)
            or deps.failed.get(app_id) == count):
        return None
    return await _guarded(app_id, deps, count, fit_and_move(app_id, schema, base, deps, count))


async def _guarded(app_id: str, deps: AutoProjectionDeps, count: int,
                   work: Awaitable[Fitted]) -> Fitted:
    """`work` as bulk work (images embedded again wait behind searches); a failure is not
    tried again until the catalog changes."""
    token = BULK_WORK.set(True)
    try:
        return await work
    except Exception:
        deps.failed[app_id] = count
        raise
    finally:
        BULK_WORK.reset(token)


async def fit_and_move(app_id: str, schema: AppSchema, base: ModelHandle,
                       deps: AutoProjectionDeps, count: int) -> Fitted:
    """Fit the projection of `app_id` (a catalog of `count` items) and rebuild its index
    through it."""
    started = time.monotonic()
    log.info("auto projection: fitting %s on its catalog of %d items", app_id, count)
    raw_deps = ReindexDeps(index=deps.index, objects=deps.objects, model=base, schema=schema)
    images, raw = await _sample(app_id, raw_deps, deps.sample)
    embedder = deps.models.registry.get(schema.image_type)  # loaded: `base` came from it
    fit = functools.partial(fit_on_catalog, embedder.embed, images, deps.views, deps.dims,
                            catalog=raw, min_items=min(deps.min_items, MIN_ITEMS, deps.sample),
                            halted=deps.halt.is_set)
    del images  # the fit holds them until it ends, no longer
    # Sized by the catalog it was fitted for, not the sample it read: refits go by that.
    projection = replace(await asyncio.get_running_loop().run_in_executor(deps.executor, fit),
                         items=count)
    del fit
    done = await move(app_id, schema, base, projection, deps)
    return replace(done, seconds=time.monotonic() - started)


async def move(app_id: str, schema: AppSchema, base: ModelHandle, projection: Projection,
               deps: AutoProjectionDeps) -> Fitted:
    """Rebuild the index of `app_id` through `projection`, storing and serving it just before
    the swap; every point's raw vector is its own, the vector cache's, or embedded again."""
    started = time.monotonic()
    raw_deps = ReindexDeps(index=deps.index, objects=deps.objects, model=base, schema=schema)
    model = projected(base, projection)

    async def convert(points: list[IndexPoint]) -> list[IndexPoint]:
        vectors = await _raw_vectors(app_id, raw_deps, points)
        moved = projection.apply(np.stack(vectors)) if vectors else []
        return [IndexPoint(p.im_name, v.tolist(),
                           {**p.payload, SYSTEM_KEY: {**_system(p), "model": model_id(model)}})
                for p, v in zip(points, moved, strict=True)]

    async def publish() -> None:
        # Before the swap: from here on every new vector is projected (and a raw one made a
        # moment before is projected on its way in: `Models.reprojected`).
        await save_projection(deps.objects, app_id, base, projection)
        deps.models.set_projection(app_id, base, projection)

    moved = await deps.index.rebuild(app_id, projection.dim, convert, before_swap=publish)
    return Fitted(app_id, model_id(model), projection.items, projection.dim, moved,
                  time.monotonic() - started)


async def _current(app_id: str, deps: AutoProjectionDeps, base: ModelHandle) -> Projection | None:
    """The stored projection, read again only when its digest changed since the last look."""
    digest = await stored_digest(deps.objects, app_id, base)
    cached = deps.projections.get(app_id)
    if digest is None:
        deps.projections.pop(app_id, None)
        return None
    if cached is None or cached.digest != digest:
        cached = await load_projection(deps.objects, app_id, base)
        if cached is None:
            return None
        deps.projections[app_id] = cached
    return cached


async def _consistent(app_id: str, deps: AutoProjectionDeps, base: ModelHandle,
                      projection: Projection) -> bool:
    """Whether the index is on `projection` (its points name the model they came from; a
    projection may keep the raw model's dimension, so the dimension alone cannot tell)."""
    page = await deps.index.scroll(app_id, limit=1)
    return not page.points or _system(page.points[0]).get("model") == model_id(projected(base, projection))


async def _sample(app_id: str, deps: ReindexDeps, sample: int,
                  ) -> tuple[list[Any], np.ndarray]:
    """Up to `sample` stored catalog images (at most FIT_MAX_SIDE px) and their raw vectors."""
    images, vectors, offset = [], [], None
    while len(images) < sample:
        page = await deps.index.scroll(app_id, limit=min(256, sample), offset=offset,
                                       with_vectors=True)
        points = [p for p in page.points if _system(p).get("image_key")]
        found = await _raw_vectors(app_id, deps, points, strict=False)
        for point, vector in zip(points, found, strict=True):
            if vector is None:
                continue
            try:
                image = await asyncio.to_thread(_small, await deps.objects.get(_system(point)["image_key"]))
            except (NotFound, MagpieError):
                continue  # a missing or broken image only makes the sample smaller
            images.append(image)
            vectors.append(vector)
            if len(images) >= sample:
                break
        offset = page.next_offset
        if offset is None:
            break
    return images, np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)


def _small(data: bytes):  # noqa: ANN202 - PIL image
    image = _open(data)
    image.thumbnail((FIT_MAX_SIDE, FIT_MAX_SIDE))
    return image


async def _raw_vectors(app_id: str, deps: ReindexDeps, points: Sequence[IndexPoint], *,
                       strict: bool = True) -> list[np.ndarray | None]:
    """Each point's vector from the raw model: its own when the point is on that model, else
    the vector cache's or, failing that, the stored image embedded again. `strict`: a point
    without one fails the whole call (a rebuild must move every point), else it reads None."""
    raw_id = model_id(deps.model)

    async def one(point: IndexPoint) -> np.ndarray | None:
        if _system(point).get("model") == raw_id and point.vector:
            return np.asarray(point.vector, dtype=np.float32)
        try:
            vector, _ = await _vector(app_id, deps, point)
        except MagpieError as err:
            if strict:
                raise MagpieError(f"{point.im_name}: no vector from {raw_id} ({err.detail})") from err
            return None
        return vector

    # Together: images embedded again share the batcher's batches.
    return list(await asyncio.gather(*(one(p) for p in points)))
