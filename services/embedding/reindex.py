"""Re-embed an application's indexed items from their stored images, after a model change.

Meant to run while the server is stopped (the CLI's `magpie reindex`). Each point keeps its
payload; only its vector and `@sys.model` change. Points already on the target model are
skipped, so a re-run after an interruption picks up where the last one stopped.

Same dimension: points are rewritten in place, page by page. Other dimension: the collection
must be rebuilt, so every item is embedded first (nothing is touched if one fails), the
points' payloads are saved in the object store, and only then is the collection dropped,
created anew and refilled from that save; a re-run that finds the save finishes the rebuild.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.errors import MagpieError, NotFound
from magpie.common.events.control import FieldSpec
from magpie.common.ports import IndexPoint, ObjectStore, VectorIndex
from magpie.common.progress import Progress, Quiet
from magpie.embedding.handlers import ModelHandle, _open, cached_vector, vector_key
from magpie.search.handlers import SYSTEM_KEY
from PIL import Image

PAGE = 64  # points per page: two pages in flight keep a 32-image batcher busy
PAGES_IN_FLIGHT = 2


@dataclass
class ReindexDeps:
    """What a reindex needs; `names` lists the catalog when the index cannot scroll."""

    index: VectorIndex
    objects: ObjectStore
    model: ModelHandle
    schema: AppSchema
    names: Callable[[], Awaitable[list[str]]] | None = None


@dataclass
class ReindexResult:
    """What a run did, per point."""

    app_id: str
    model: str
    total: int = 0
    embedded: int = 0  # vectors computed from the stored image
    cached: int = 0  # vectors found in the vector cache (same model, same image bytes)
    skipped: int = 0  # already on the target model
    failed: list[tuple[str, str]] = field(default_factory=list)  # (im_name, why)
    rebuilt: bool = False  # the collection was recreated for a new dimension


class ReindexAborted(MagpieError):
    """A rebuild was not started: some items could not be embedded; the index is unchanged."""

    code, message, http_status = 500, "Reindex aborted.", 500


def model_id(model: ModelHandle) -> str:
    """How `@sys.model` names a model (as the search stage writes it)."""
    return f"{model.name}@{model.version}"


def rebuild_key(app_id: str) -> str:
    """Where the payloads of a rebuild in progress are saved."""
    return f"{app_id}/reindex/rebuild.json"


async def reindex(app_id: str, deps: ReindexDeps, *, force: bool = False, page: int = PAGE,
                  progress: Progress | None = None) -> ReindexResult:
    """Give every point of `app_id` a vector from `deps.model`; see the module docstring.

    `force` re-embeds points already on the model too (cached vectors are still used: they
    come from the same model and the same image bytes).
    """
    progress = progress or Quiet()
    result = ReindexResult(app_id, model_id(deps.model))
    saved = await _load_rebuild(deps.objects, app_id)
    if saved is not None:  # an interrupted rebuild: the save is the catalog now
        await _rebuild(app_id, deps, saved, await _model_dim(deps.model), result, progress, page)
        return result
    total = await deps.index.count(app_id)
    if total == 0:
        return result
    old_dim, new_dim = await _index_dim(app_id, deps), await _model_dim(deps.model)
    if old_dim == new_dim:
        await _in_place(app_id, deps, total, force, page, result, progress)
        return result
    points = await _embed_all(app_id, deps, total, page, result, progress)
    if result.failed:
        shown = ", ".join(f"{name} ({why})" for name, why in result.failed[:5])
        raise ReindexAborted(f"{len(result.failed)} items could not be re-embedded, so the "
                             f"index was left as it was: {shown}")
    await deps.objects.put(rebuild_key(app_id), json.dumps(points).encode(), "application/json")
    await _rebuild(app_id, deps, points, new_dim, result, progress, page, counted=True)
    return result


async def _in_place(app_id: str, deps: ReindexDeps, total: int, force: bool, page: int,
                    result: ReindexResult, progress: Progress) -> None:
    target = model_id(deps.model)
    progress.phase("re-embedding", total)

    async def work(points: list[IndexPoint]) -> None:
        todo = [p for p in points if force or _system(p).get("model") != target]
        result.total += len(points)
        result.skipped += len(points) - len(todo)
        done = await _vectors(app_id, deps, todo, result)
        await deps.index.upsert(app_id, [_moved(p, v, target) for p, v in done])
        progress.advance(len(points))

    await _each_page(_pages(app_id, deps, page), work)


async def _embed_all(app_id: str, deps: ReindexDeps, total: int, page: int,
                     result: ReindexResult, progress: Progress) -> list[list[Any]]:
    """Fill the vector cache for every point; the [im_name, payload] pairs to rebuild from."""
    target, saved = model_id(deps.model), []
    progress.phase("embedding", total)

    async def work(points: list[IndexPoint]) -> None:
        result.total += len(points)
        for point, _ in await _vectors(app_id, deps, points, result):
            saved.append([point.im_name, _moved(point, [], target).payload])
        progress.advance(len(points))

    await _each_page(_pages(app_id, deps, page), work)
    return saved


async def _rebuild(app_id: str, deps: ReindexDeps, points: list[list[Any]], dim: int,
                   result: ReindexResult, progress: Progress, page: int,
                   counted: bool = False) -> None:
    """Drop and recreate the collection at `dim`, refill it from `points`, forget the save."""
    target = model_id(deps.model)
    # Dropped again on a resumed run too: the save holds every point, the index may not.
    await deps.index.drop(app_id)
    specs = [FieldSpec(name=f.name, type=f.type, searchable=f.searchable)
             for f in deps.schema.fields]
    await deps.index.ensure_collection(app_id, dim, specs)
    progress.phase("writing the new index", len(points))
    tally = ReindexResult(app_id, target)  # a resumed run reports what it embedded itself

    async def work(chunk: list[IndexPoint]) -> None:
        done = await _vectors(app_id, deps, chunk, tally)
        await deps.index.upsert(app_id, [_moved(p, v, target) for p, v in done])
        progress.advance(len(chunk))

    async def chunks() -> AsyncIterator[list[IndexPoint]]:
        for i in range(0, len(points), page):
            yield [IndexPoint(name, [], payload) for name, payload in points[i:i + page]]

    await _each_page(chunks(), work)
    # Failures here lost both their cached vector and their image since the save: they cannot
    # be indexed by any run, so they are reported (and left out) rather than block the rebuild.
    result.failed.extend(tally.failed)
    await deps.objects.delete(rebuild_key(app_id))
    if not counted:
        result.total, result.embedded, result.cached = len(points), tally.embedded, tally.cached
    result.rebuilt = True


async def _each_page(pages: AsyncIterator[list[IndexPoint]],
                     work: Callable[[list[IndexPoint]], Awaitable[None]]) -> None:
    """Run `work` on each page, two at a time: one page decodes while the other embeds."""
    slots = asyncio.Semaphore(PAGES_IN_FLIGHT)

    async def run(points: list[IndexPoint]) -> None:
        try:
            await work(points)
        finally:
            slots.release()

    try:
        async with contextlib.aclosing(pages), asyncio.TaskGroup() as tasks:
            async for points in pages:
                await slots.acquire()
                tasks.create_task(run(points))
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None  # the first page's error says what went wrong


async def _pages(app_id: str, deps: ReindexDeps, page: int) -> AsyncIterator[list[IndexPoint]]:
    """The index's points, a page at a time: by scrolling the index when it can, else by
    looking up each name of the catalog (items not indexed yet are left out)."""
    scroll = getattr(deps.index, "scroll", None)
    if scroll is not None:
        offset = None
        while True:
            points, offset = await scroll(app_id, offset=offset, limit=page)
            if points:
                yield points
            if offset is None:
                return
    if deps.names is None:
        raise TypeError("this index cannot list its points: pass the catalog's names")
    names = sorted(await deps.names())
    for i in range(0, len(names), page):
        found = await asyncio.gather(*(deps.index.get(app_id, n) for n in names[i:i + page]))
        points = [p for p in found if p is not None]
        if points:
            yield points


async def _vectors(app_id: str, deps: ReindexDeps, points: list[IndexPoint],
                   result: ReindexResult) -> list[tuple[IndexPoint, np.ndarray]]:
    """New vectors of `points`, embedded concurrently so the model's batcher groups them;
    points whose image is gone or unreadable are recorded as failed and left out."""
    found = await asyncio.gather(*(_vector(app_id, deps, p) for p in points),
                                 return_exceptions=True)
    done = []
    for point, outcome in zip(points, found, strict=True):
        if isinstance(outcome, MagpieError) and not outcome.retryable:
            result.failed.append((point.im_name, outcome.detail))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            vector, cached = outcome
            result.cached += cached
            result.embedded += not cached
            done.append((point, vector))
    return done


async def _vector(app_id: str, deps: ReindexDeps, point: IndexPoint) -> tuple[np.ndarray, bool]:
    """(vector, from the cache?): the embedding stage's cache is read and filled, so a later
    re-insert of the same image is not embedded again."""
    system = _system(point)
    content_hash, image_key = system.get("content_hash"), system.get("image_key")
    key = vector_key(app_id, deps.model, content_hash) if content_hash else None
    if content_hash:
        cached = await cached_vector(deps.objects, app_id, deps.model, content_hash)
        if cached is not None:
            return cached, True
    if not image_key:
        raise NotFound("The point has no stored image to embed.")
    try:
        data = await deps.objects.get(image_key)
    except NotFound:
        raise NotFound(f"The stored image {image_key} is missing.") from None
    image = await asyncio.to_thread(_open, data)
    vector = np.asarray(await deps.model.embed(image), dtype=np.float32)
    if key is not None:
        await deps.objects.put(key, vector.tobytes())
    return vector, False


def _system(point: IndexPoint) -> dict[str, Any]:
    return point.payload.get(SYSTEM_KEY) or {}


def _moved(point: IndexPoint, vector: np.ndarray | list[float], target: str) -> IndexPoint:
    """The point with a new vector and `@sys.model`, every other payload key kept."""
    payload = {**point.payload, SYSTEM_KEY: {**_system(point), "model": target}}
    return IndexPoint(point.im_name, np.asarray(vector, dtype=np.float32).tolist(), payload)


async def _index_dim(app_id: str, deps: ReindexDeps) -> int:
    """The collection's dimension, read off one of its points."""
    async with contextlib.aclosing(_pages(app_id, deps, 1)) as pages:
        async for points in pages:
            stored = await deps.index.get(app_id, points[0].im_name)
            if stored is not None:
                return len(stored.vector)
    raise NotFound(f"No point of {app_id} could be read.")


async def _model_dim(model: ModelHandle) -> int:
    """The model's dimension, from a blank probe image (the handle does not say)."""
    return len(await model.embed(Image.new("RGB", (64, 64), (255, 255, 255))))


async def _load_rebuild(objects: ObjectStore, app_id: str) -> list[list[Any]] | None:
    try:
        return json.loads(await objects.get(rebuild_key(app_id)))
    except NotFound:
        return None
