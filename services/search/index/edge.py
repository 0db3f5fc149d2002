"""The vector index on qdrant-edge: Qdrant's engine in-process, one shard per application.

On disk: `root/<app_id>/meta.json` (dim, field types, current generation) and the shard in
`root/<app_id>/shard-<generation>/`. Quirks of qdrant-edge-py 0.9 that shape this module:

- Every EdgeShard call holds the GIL, `optimize()` for the whole HNSW build (7 s for 20k
  points of 512-d on 2 cores, 6 min for 100k): in a thread it would freeze the event loop. So
  optimisation runs in a child process on a copy of the shard; the built copy then replaces
  the live shard, with the writes made meanwhile replayed onto it.
- A shard directory is locked by its WAL: one handle at a time.
- `set_payload` on a missing point raises a bare Exception: the point is looked up first.

Per application, writes are serialised (`_App.write`); reads run alongside writes and the
optimisation copy, and wait only for the instant a built shard is swapped in. Reads (query,
retrieve, count, facet) run inline on the event loop: they hold the GIL as a thread would
(measured), so a thread buys no parallelism, and the hop back through the loop's ready queue
put a search behind every ready task of a running ingest (p99 0.4 s during one at 100k).
Writes stay in threads, in chunks, as they can take long.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from magpie.common.errors import IndexModelMismatch, NotFound
from magpie.common.events.control import FieldSpec
from magpie.common.filters import Filter
from magpie.common.ports.index import FacetCount, Hit, IndexPoint, ScrollPage
from magpie.search.index import (
    IM_NAME, build_filter, check_app_id, check_vector, facet_counts, named, plan_filter,
    point_id, scroll_offset, wanted_indexes,
)
from magpie.search.index.edge_app import AppShard, close_app, optimize_shard, reading
from magpie.search.index.edge_rebuild import Convert, rebuild_shard
from magpie.search.index.edge_files import (
    _apply, _create, _index_ops, _open, _point_structs, _qe, _write_meta,
)

log = logging.getLogger(__name__)

UPSERT_CHUNK = 256  # points per engine call: the event loop gets the GIL in between
# A flush holds the GIL for as long as it writes (0.65 s for 100k fresh points of 512-d):
# flushing every few thousand written points keeps each one, and so every stall, short.
FLUSH_EVERY = 5_000
REBUILD_PAGE = 128  # points per page a rebuild moves: each page holds the GIL (scroll, convert)

class EdgeIndex:
    """VectorIndex on embedded qdrant-edge shards under `root`, optimised in the background.

    An optimisation (HNSW build, segment merge, vacuum) starts by itself once
    `optimize_after` points were written to a shard since its last one (0: never), and again
    right after if that many more arrived meanwhile; `optimize()` runs one on demand. A count
    rather than a timer: plain search then never covers more than `optimize_after` unindexed
    points (about 1.5 ms per query for 20k of 512-d here), and small catalogs, exact and fast
    without HNSW, never pay for a build. Segments under `indexing_threshold_kb` (fixed when a
    shard is created) stay plain. Queries keep running, on plain search, while one builds.
    """

    def __init__(
        self, root: Path, *, optimize_after: int = 20_000, indexing_threshold_kb: int = 10_000,
    ) -> None:
        self._root = Path(root)
        self._after, self._threshold_kb = optimize_after, indexing_threshold_kb
        self._apps: dict[str, AppShard] = {}
        self._lock = asyncio.Lock()  # opening, creating, dropping and closing shards

    async def start(self) -> None:
        """Create the root folder; shards open lazily on first use."""
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Stop optimisations (their copies are discarded), flush and close every shard."""
        async with self._lock:
            apps, self._apps = list(self._apps.values()), {}
            for app in apps:
                await close_app(app)

    async def ensure_collection(self, app_id: str, dim: int, fields: Sequence[FieldSpec]) -> None:
        """Create the application's shard if missing; make its payload indexes match `fields`."""
        app = await self._get(app_id)
        if app is None:
            async with self._lock:
                app = self._apps.get(app_id)
                if app is None:
                    meta = {"dim": dim, "fields": {}, "generation": uuid.uuid4().hex[:12]}
                    path = self._root / app_id
                    shard = await asyncio.to_thread(_create, path, meta, self._threshold_kb)
                    app = self._apps[app_id] = AppShard(path, meta, shard)
        if app.meta["dim"] != dim:
            raise IndexModelMismatch.dimensions(app_id, app.meta["dim"], dim)
        wanted, app.meta["fields"] = wanted_indexes(fields), {f.name: f.type for f in fields}

        def ops(shard: Any) -> list[Any]:
            _write_meta(app.dir, app.meta)  # under the write lock, as the generation swap is
            return _index_ops(_qe(), shard, wanted)

        await self._write(app, ops)

    async def upsert(self, app_id: str, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points (the id comes from `im_name`, kept in the payload)."""
        if not points:
            return
        app = await self._get(app_id)
        qe = _qe()

        def ops(_shard: Any) -> list[Any]:
            # The dimension read under the write lock: a rebuild may have changed it meanwhile.
            structs = _point_structs(qe, app_id, points, app.meta["dim"])
            return [qe.UpdateOperation.upsert_points(structs[i:i + UPSERT_CHUNK])
                    for i in range(0, len(structs), UPSERT_CHUNK)]

        if app is None or not await self._write(app, ops, len(points),
                                                names=[p.im_name for p in points]):
            raise NotFound(f"No index for application {app_id}.")
        self._wrote(app_id, app, len(points))

    async def set_payload(self, app_id: str, im_name: str, payload: dict[str, Any]) -> bool:
        """Merge `payload` into an existing point; False when the point does not exist."""
        app = await self._get(app_id)
        if app is None:
            return False
        pid, found = point_id(app_id, im_name), False
        body = {k: v for k, v in payload.items() if k != IM_NAME}

        def ops(shard: Any) -> list[Any]:
            nonlocal found
            found = bool(shard.retrieve([pid], with_payload=False, with_vector=False))
            return [_qe().UpdateOperation.set_payload([pid], body)] if found and body else []

        await self._write(app, ops, names=[im_name])
        return found

    async def delete(self, app_id: str, im_names: Sequence[str]) -> None:
        """Remove points; missing ones (and a missing application) are ignored."""
        app = await self._get(app_id)
        if app is None or not im_names:
            return
        ids = [point_id(app_id, n) for n in im_names]
        await self._write(app, lambda _s: [_qe().UpdateOperation.delete_points(ids)], len(ids),
                          names=im_names)
        self._wrote(app_id, app, len(ids))

    async def delete_payload_keys(self, app_id: str, keys: Sequence[str]) -> None:
        """Remove payload keys from every point (`im_name` stays)."""
        app, keys = await self._get(app_id), [k for k in keys if k != IM_NAME]
        if app is None or not keys:
            return
        qe = _qe()  # an empty filter selects every point
        op = qe.UpdateOperation.delete_payload_by_filter(qe.Filter(), keys)
        await self._write(app, lambda _s: [op], every_point=True)

    async def drop(self, app_id: str) -> None:
        """Close and delete the application's shard and files; a missing one is ignored."""
        check_app_id(app_id)
        async with self._lock:  # held throughout, so that nothing reopens the shard meanwhile
            app = self._apps.pop(app_id, None)
            if app is not None:
                await close_app(app)
            await asyncio.to_thread(shutil.rmtree, self._root / app_id, ignore_errors=True)

    async def get(self, app_id: str, im_name: str) -> IndexPoint | None:
        """One point with its vector (unit-normalised by the cosine space) and payload, or None."""
        app = await self._get(app_id)
        async with self._reading(app) as shard:
            if shard is None:
                return None
            found = shard.retrieve([point_id(app_id, im_name)], with_payload=True, with_vector=True)
        if not found:
            return None
        return IndexPoint(im_name, list(found[0].vector), dict(found[0].payload or {}))

    async def search(
        self, app_id: str, vector: Sequence[float], *, limit: int, offset: int = 0,
        filter: Filter = (), exclude: Sequence[str] = (), score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The nearest points (cosine similarity, best first) that satisfy the filter."""
        app, flt = await self._plan(app_id, filter, exclude)
        if app is None or limit <= 0:
            return []
        qe = _qe()
        async with self._reading(app) as shard:
            # Checked against the generation being read: a rebuild may change the dimension.
            request = qe.QueryRequest(
                limit=limit, offset=max(offset, 0) or None,
                query=qe.Query.Nearest(check_vector(vector, app.meta["dim"], app_id)),
                filter=flt, score_threshold=score_threshold, with_payload=True,
                with_vector=with_vectors,
            )
            points = [] if shard is None else shard.query(request)
        return [Hit(p.payload[IM_NAME], float(p.score), dict(p.payload),
                    list(p.vector) if with_vectors else None) for p in points]

    async def count(self, app_id: str, filter: Filter = (), exclude: Sequence[str] = ()) -> int:
        """How many points satisfy the filter, the excluded ones left out (see `named`)."""
        app = await self._get(app_id)
        plan = plan_filter(filter, app.meta["fields"]) if app is not None else None
        if app is None or plan is None:
            return 0
        qe = _qe()
        plans = [plan, named(plan, exclude)] if exclude else [plan]
        filters = [build_filter(qe, qe.RangeFloat, p) for p in plans]
        requests = [qe.CountRequest(exact=f is not None, filter=f) for f in filters]
        async with self._reading(app) as shard:
            if shard is None:
                return 0
            counts = [shard.count(r) for r in requests]
        return counts[0] - sum(counts[1:])

    async def facet(
        self, app_id: str, key: str, *, limit: int = 10, filter: Filter = (),
        exclude: Sequence[str] = (),
    ) -> list[FacetCount]:
        """Exact value counts of a keyword or integer field, most frequent first."""
        app, flt = await self._plan(app_id, filter, exclude)
        if app is None or limit <= 0:
            return []
        request = _qe().FacetRequest(key=key, limit=limit, exact=flt is not None, filter=flt)
        async with self._reading(app) as shard:
            hits = [] if shard is None else shard.facet(request)
        return facet_counts((h.value, h.count) for h in hits)

    async def value_range(
        self, app_id: str, key: str, filter: Filter = (), exclude: Sequence[str] = (),
    ) -> tuple[float, float] | None:
        """Min and max of a numeric field, by ordered scrolls over its range index."""
        app, flt = await self._plan(app_id, filter, exclude)
        if app is None:
            return None
        qe, ends = _qe(), []
        async with self._reading(app) as shard:
            for direction in (qe.Direction.Asc, qe.Direction.Desc):
                request = qe.ScrollRequest(limit=1, filter=flt, with_payload=[key],
                                           with_vector=False, order_by=qe.OrderBy(key, direction))
                found = [] if shard is None else shard.scroll(request)[0]
                ends += [r.payload[key] for r in found]
        return (ends[0], ends[1]) if len(ends) == 2 else None

    async def scroll(
        self, app_id: str, *, limit: int = 256, offset: str | None = None, filter: Filter = (),
        fields: Sequence[str] | None = None, with_vectors: bool = False,
    ) -> ScrollPage:
        """The points that satisfy the filter, a page at a time in point-id order."""
        app, flt = await self._plan(app_id, filter, ())
        if app is None or limit <= 0:
            return ScrollPage([], None)
        qe = _qe()
        request = qe.ScrollRequest(
            offset=scroll_offset(offset), limit=limit, filter=flt,
            with_payload=True if fields is None else [IM_NAME, *fields], with_vector=with_vectors)
        async with self._reading(app) as shard:
            records, after = ([], None) if shard is None else shard.scroll(request)
        return ScrollPage([IndexPoint(r.payload[IM_NAME], list(r.vector) if with_vectors else [],
                                      dict(r.payload)) for r in records],
                          None if after is None else str(after))

    async def _plan(
        self, app_id: str, filter: Filter, exclude: Sequence[str],
    ) -> tuple[AppShard | None, Any]:
        """The open application and its engine filter; no application when nothing can match."""
        app = await self._get(app_id)
        plan = plan_filter(filter, app.meta["fields"]) if app is not None else None
        if app is None or plan is None:
            return None, None
        return app, build_filter(_qe(), _qe().RangeFloat, plan, exclude)

    async def rebuild(self, app_id: str, dim: int, convert: Convert, *,
                      page: int = REBUILD_PAGE,
                      before_swap: Callable[[], Awaitable[None]] | None = None) -> int:
        """Replace the application's points by `convert`ed ones of `dim` dimensions (a new
        projection, a new model): queries and writes go on against the old vectors, writes
        wait only for the catch-up on what they changed meanwhile, then the new generation
        is swapped in, right after `before_swap`; on any error (theirs too) nothing changes.
        Returns the points the new generation holds (see `edge_rebuild`)."""
        app = await self._get(app_id)
        if app is None:
            raise NotFound(f"No index for application {app_id}.")
        moved = await rebuild_shard(app, app_id, dim, convert, self._threshold_kb, page,
                                    before_swap)
        if self._after and moved >= self._after and app.task is None:
            self._schedule(app_id, app)  # the new generation has no graph yet
        return moved

    async def info(self, app_id: str) -> dict[str, Any] | None:
        """Points, HNSW-indexed vectors, segments, and whether an optimisation is running."""
        app = await self._get(app_id)
        async with self._reading(app) as shard:
            if shard is None:
                return None
            i = shard.info()
        return {"points": i.points_count, "indexed_vectors": i.indexed_vectors_count,
                "segments": i.segments_count, "optimizing": app.task is not None}

    async def optimize(self, app_id: str) -> bool:
        """Optimise the shard in a child process, or join the running optimisation; True when
        the engine changed anything. Queries and writes go on meanwhile."""
        app = await self._get(app_id)
        return False if app is None else await asyncio.shield(self._schedule(app_id, app))

    def _schedule(self, app_id: str, app: AppShard) -> asyncio.Task[bool]:
        if app.task is None:
            app.task = asyncio.create_task(optimize_shard(app), name=f"edge-optimize-{app_id}")
            app.task.add_done_callback(lambda task: self._optimised(app_id, app, task))
        return app.task

    def _optimised(self, app_id: str, app: AppShard, task: asyncio.Task[bool]) -> None:
        app.task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("edge index: optimisation of %s failed", app_id, exc_info=task.exception())
        elif self._after and app.pending >= self._after and not app.closing:
            self._schedule(app_id, app)  # a bulk load went on during the build

    def _wrote(self, app_id: str, app: AppShard, n: int) -> None:
        app.pending += n
        # Not while a rebuild refills: the generation it would optimise is about to go.
        if (self._after and app.pending >= self._after and app.task is None
                and not app.closing and app.touched is None):
            self._schedule(app_id, app)

    async def _get(self, app_id: str) -> AppShard | None:
        app = self._apps.get(check_app_id(app_id))
        if app is not None:
            return app
        async with self._lock:
            app = self._apps.get(app_id)
            if app is None:
                opened = await asyncio.to_thread(_open, self._root / app_id)
                if opened is not None:
                    app = self._apps[app_id] = AppShard(self._root / app_id, *opened)
            return app

    async def _write(
        self, app: AppShard, make_ops: Callable[[Any], list[Any]], points: int = 0, *,
        names: Sequence[str] = (), every_point: bool = False,
    ) -> bool:
        """Apply the operations `make_ops` builds from the shard; False when it is gone.
        `names` (the points written) and `every_point` (writes that touch them all) are
        what a rebuild in progress must catch up on."""
        async with app.write:
            async with self._reading(app) as shard:
                if shard is None:
                    return False
                app.unflushed += points
                flush, app.unflushed = app.unflushed >= FLUSH_EVERY, app.unflushed % FLUSH_EVERY
                ops = await asyncio.to_thread(_apply, shard, make_ops, flush)
            if app.journal is not None:
                app.journal.extend(ops)
            if app.touched is not None:
                app.touched.update(names)
                if every_point:
                    app.replay.extend(ops)
        return True

    def _reading(self, app: AppShard | None, *,
                 exclusive: bool = False) -> AbstractAsyncContextManager[Any]:
        """The live shard, held against swaps and closes (see `AppShard.reading`)."""
        return reading(app, exclusive=exclusive)
