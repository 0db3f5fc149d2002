"""One application's qdrant-edge shard: the gate readers pass, and its optimisation.

`EdgeIndex` (magpie.search.index.edge) keeps one `AppShard` per open application. Readers
pass the gate alongside each other and alongside writes; an exclusive holder (a generation
swap, a close) waits for the readers in flight and admits none meanwhile. An optimisation
builds the HNSW graph on a copy of the shard in a child process, then swaps the built copy
in with the writes made meanwhile replayed onto it (every EdgeShard call holds the GIL, so in
a thread the build would freeze the event loop).
"""
from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magpie.search.index.edge_files import (
    SHARD_PREFIX, _adopt, _close_shard, _copy_shard, _retire,
)

# The optimiser process, at a lower priority so that queries keep the CPU.
_CHILD = """import os, sys
os.nice(10)
from qdrant_edge import EdgeShard
s = EdgeShard.load(sys.argv[1]); changed = s.optimize(); s.flush(); s.close()
print(int(changed))"""


@dataclass(eq=False)
class AppShard:
    """One application's open shard and the state that guards it."""

    dir: Path
    meta: dict[str, Any]
    shard: Any
    write: asyncio.Lock = field(default_factory=asyncio.Lock)
    gate: asyncio.Condition = field(default_factory=asyncio.Condition)
    readers: int = 0
    swapping: bool = False
    closing: bool = False
    journal: list[Any] | None = None  # writes made since the optimisation copy was taken
    # While a rebuild refills a new generation: the names written meanwhile, and the writes
    # that touch every point (payload keys removed), to replay onto it before the swap.
    touched: set[str] | None = None
    replay: list[Any] = field(default_factory=list)
    rebuilt: asyncio.Future[None] | None = None  # done when the rebuild in progress ends
    pending: int = 0  # points written since the last optimisation
    unflushed: int = 0  # points written since the last flush
    task: asyncio.Task[bool] | None = None
    proc: asyncio.subprocess.Process | None = None

    @asynccontextmanager
    async def reading(self, *, exclusive: bool = False) -> AsyncIterator[Any]:
        """The live shard (None once closed), neither swapped nor closed while a reader holds
        it; an exclusive holder (swap, close) waits for the readers in flight, admits none."""
        async with self.gate:
            await self.gate.wait_for(lambda: not self.swapping)
            if exclusive:
                self.swapping = True
                await self.gate.wait_for(lambda: self.readers == 0)
            else:
                self.readers += 1
        try:
            yield self.shard
        finally:
            async with self.gate:
                if exclusive:
                    self.swapping = False
                else:
                    self.readers -= 1
                self.gate.notify_all()


@asynccontextmanager
async def reading(app: AppShard | None, *, exclusive: bool = False) -> AsyncIterator[Any]:
    """`app.reading()`, or None for an application that is not there."""
    if app is None:
        yield None
        return
    async with app.reading(exclusive=exclusive) as shard:
        yield shard


async def optimize_shard(app: AppShard) -> bool:
    """Build the shard's graph in a child process on a copy, then swap the copy in; True when
    the engine changed anything."""
    generation = uuid.uuid4().hex[:12]
    src, dst = (app.dir / (SHARD_PREFIX + g) for g in (app.meta["generation"], generation))
    adopted, written = False, 0
    try:
        async with app.write:  # the copy is consistent: no write runs while it is taken
            async with app.reading() as shard:
                if shard is None:
                    return False
                await asyncio.to_thread(_copy_shard, shard, src, dst)
            app.journal, written = [], app.pending
        if not await _run_child(app, dst):
            return False
        async with app.write:
            if app.closing:
                return False
            # Replayed before the swap, so that readers wait for the swap alone.
            new = await asyncio.to_thread(_adopt, dst, app.journal or [])
            async with app.reading(exclusive=True):
                old, app.shard = app.shard, new
                app.meta["generation"], adopted = generation, True
            await asyncio.to_thread(_retire, old, app.dir, app.meta, src)
        return True
    finally:
        # Counted as done even when nothing changed or the build failed: the next one
        # waits for `optimize_after` new writes rather than starting over at once.
        app.journal, app.pending = None, max(0, app.pending - written)
        if not adopted:
            await asyncio.to_thread(shutil.rmtree, dst, ignore_errors=True)


async def _run_child(app: AppShard, path: Path) -> bool:
    app.proc = proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        if app.closing:
            proc.kill()
        out, err = await proc.communicate()
    finally:
        app.proc = None
        if proc.returncode is None:  # cancelled while waiting: never leave it running
            proc.kill()
    if app.closing:
        return False
    if proc.returncode:
        raise RuntimeError(f"edge optimiser exited {proc.returncode}: {err.decode()[-800:]}")
    return out.strip().endswith(b"1")


async def close_app(app: AppShard) -> None:
    """Stop the optimisation (its copy is discarded), then flush and close the shard."""
    app.closing = True
    if app.proc is not None and app.proc.returncode is None:
        app.proc.kill()
    if app.rebuilt is not None:  # it stops at its next page: its files must not go first
        await asyncio.wait({app.rebuilt})
    if app.task is not None:
        await asyncio.gather(app.task, return_exceptions=True)
    async with app.write:
        async with app.reading(exclusive=True):
            shard, app.shard = app.shard, None
    if shard is not None:
        await asyncio.to_thread(_close_shard, shard)
