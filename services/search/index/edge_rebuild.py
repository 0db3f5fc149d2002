"""Moving one application's qdrant-edge shard to vectors of another dimension, online.

A new shard generation is filled from the live one page by page, every point through the
caller's `convert`, while queries and writes go on against the live one; the names written
meanwhile are recorded (`AppShard.touched`). Then, under the write lock, those points are read
again and moved (or deleted), writes that touch every point are replayed, payload indexes are
matched, and the new generation is swapped in: writes wait only for that catch-up. Any error
discards the new generation and leaves the live one as it was.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from magpie.common.errors import NotFound
from magpie.common.ports.index import IndexPoint
from magpie.search.index import IM_NAME, point_id
from magpie.search.index.edge_app import AppShard
from magpie.search.index.edge_files import (
    SHARD_PREFIX, _apply, _create_shard, _discard, _index_ops, _payload_indexes, _point_structs,
    _qe, _retire,
)

Convert = Callable[[list[IndexPoint]], Awaitable[list[IndexPoint]]]


async def rebuild_shard(app: AppShard, app_id: str, dim: int, convert: Convert,
                        threshold_kb: int, page: int,
                        before_swap: Callable[[], Awaitable[None]] | None = None) -> int:
    """Refill a new generation of `dim`-d vectors with every point passed through `convert`
    and swap it in (see the module docstring); the number of points it holds."""
    if app.touched is not None:
        raise RuntimeError(f"the index of {app_id} is already being rebuilt")
    generation = uuid.uuid4().hex[:12]
    path = app.dir / (SHARD_PREFIX + generation)
    app.touched, app.replay, swapped = set(), [], False
    app.rebuilt = asyncio.get_running_loop().create_future()
    new = None
    try:
        new = await asyncio.to_thread(_create_shard, path, dim, threshold_kb)
        await _refill(app, app_id, new, dim, convert, page)
        while True:
            if app.task is not None:  # an optimisation's swap must not follow ours
                await asyncio.wait({app.task})
            async with app.write:
                if app.closing:
                    raise RuntimeError(f"the index of {app_id} is closing")
                if app.task is not None:
                    continue
                await _catch_up(app, app_id, new, dim, convert, page)
                if before_swap is not None:
                    await before_swap()
                old_path = app.dir / (SHARD_PREFIX + app.meta["generation"])
                async with app.reading(exclusive=True):
                    old, app.shard = app.shard, new
                    app.meta.update(dim=dim, generation=generation)
                    swapped = True
                await asyncio.to_thread(_retire, old, app.dir, app.meta, old_path)
                count = new.count(_qe().CountRequest(exact=True))
                app.pending, app.unflushed = count, 0
                return count
    finally:
        app.touched, app.replay = None, []
        if not swapped and new is not None:
            await asyncio.to_thread(_discard, new, path)
        app.rebuilt.set_result(None)
        app.rebuilt = None


async def _refill(app: AppShard, app_id: str, new: Any, dim: int, convert: Convert,
                  page: int) -> None:
    qe, offset = _qe(), None
    await _match_indexes(app, app_id, new)  # first: points are indexed as they go in
    while True:
        request = qe.ScrollRequest(offset=offset, limit=page, with_payload=True, with_vector=True)
        async with app.reading() as shard:
            if shard is None or app.closing:
                raise _gone(app_id)
            records, after = shard.scroll(request)
        await _move(app_id, new, dim, convert, records)
        if after is None:
            break
        offset = str(after)
    await asyncio.to_thread(new.flush)


async def _catch_up(app: AppShard, app_id: str, new: Any, dim: int, convert: Convert,
                    page: int) -> None:
    """Bring the new generation level with the live one (under the write lock)."""
    assert app.touched is not None
    names, app.touched = sorted(app.touched), set()
    for i in range(0, len(names), page):
        ids = {point_id(app_id, n): n for n in names[i:i + page]}
        async with app.reading() as shard:
            if shard is None:
                raise _gone(app_id)
            records = shard.retrieve(list(ids), with_payload=True, with_vector=True)
        await _move(app_id, new, dim, convert, records)
        there = {r.payload[IM_NAME] for r in records}
        gone = [pid for pid, name in ids.items() if name not in there]
        if gone:
            await asyncio.to_thread(_apply, new, lambda _s: [_qe().UpdateOperation.delete_points(gone)], False)
    replay, app.replay = app.replay, []
    if replay:
        await asyncio.to_thread(_apply, new, lambda _s: replay, False)
    await _match_indexes(app, app_id, new)  # a schema change meanwhile


async def _move(app_id: str, new: Any, dim: int, convert: Convert, records: list[Any]) -> None:
    qe = _qe()
    points = await convert([IndexPoint(r.payload[IM_NAME], list(r.vector), dict(r.payload))
                            for r in records])
    structs = _point_structs(qe, app_id, points, dim)
    if structs:
        await asyncio.to_thread(_apply, new, lambda _s: [qe.UpdateOperation.upsert_points(structs)],
                                False)


async def _match_indexes(app: AppShard, app_id: str, new: Any) -> None:
    async with app.reading() as shard:
        if shard is None:
            raise _gone(app_id)
        wanted = _payload_indexes(shard)
    await asyncio.to_thread(_apply, new, lambda s: _index_ops(_qe(), s, wanted), False)


def _gone(app_id: str) -> NotFound:
    return NotFound(f"The index of {app_id} was closed or dropped during a rebuild.")
