"""Benchmark of an online index rebuild (EdgeIndex.rebuild), as an automatic projection does it.

    python bench/rebuild.py [--n 20000] [--dim 2408] [--to 1024]

`--n` random unit vectors of `--dim` with a keyword, an int and a float field are moved to
`--to` dimensions through a random projection (the same matrix product a catalog projection
costs) while one client searches without pause and another writes a point every 0.2 s (in
the old space: the rebuild catches up on it before the swap). Prints the rebuild's wall time
and points/s, the search latency before and during it (p50/p99, through the async API), the
longest write during it, and the first query on the new generation (plain search: the HNSW
build starts after it, in the background).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from magpie.common.ports.index import IndexPoint
from magpie.search.index.edge import EdgeIndex

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the catalog generator is bench/index.py's
    sys.path.insert(0, str(ROOT))

from bench.index import APP, FIELDS, _points  # noqa: E402
from bench.ingest import latency  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(args.dim, args.to)).astype(np.float32) / np.sqrt(args.dim)
    with tempfile.TemporaryDirectory(prefix="magpie-rebuild-") as root:
        index = EdgeIndex(Path(root), optimize_after=0)
        await index.start()
        await index.ensure_collection(APP, args.dim, FIELDS)
        for i in range(0, args.n, 5000):  # in parts (Python lists of floats are large)
            part = _points(min(5000, args.n - i), args.dim, rng)
            await index.upsert(APP, [IndexPoint(f"{i}-{p.im_name}", p.vector, p.payload) for p in part])
        query = _points(1, args.dim, rng)[0].vector
        before = []
        for _ in range(200):
            t = time.perf_counter()
            await index.search(APP, query, limit=10)
            before.append(time.perf_counter() - t)

        async def convert(points: list[IndexPoint]) -> list[IndexPoint]:
            moved = np.asarray([p.vector for p in points], dtype=np.float32) @ matrix
            moved /= np.linalg.norm(moved, axis=1, keepdims=True)
            return [IndexPoint(p.im_name, v.tolist(), p.payload) for p, v in zip(points, moved)]

        during, waits, done = [], [], asyncio.Event()
        new_query = (np.asarray(query, dtype=np.float32) @ matrix).tolist()

        async def searcher() -> None:
            while not done.is_set():
                t = time.perf_counter()
                try:
                    await index.search(APP, query, limit=10)
                except Exception:  # noqa: BLE001 - the swap: the next one uses the new space
                    break
                during.append(time.perf_counter() - t)
                await asyncio.sleep(0)

        async def writer() -> None:
            i = 0
            while not done.is_set():
                await asyncio.sleep(0.2)
                t = time.perf_counter()
                point = IndexPoint(f"w{i}", query, {"category": "c1", "year": 2001, "price": 1.0})
                try:
                    await index.upsert(APP, [point])
                except Exception:  # noqa: BLE001 - swapped meanwhile: old-space writes end
                    break
                waits.append(time.perf_counter() - t)
                i += 1

        tasks = [asyncio.create_task(searcher()), asyncio.create_task(writer())]
        started = time.perf_counter()
        moved = await index.rebuild(APP, args.to, convert)
        seconds = time.perf_counter() - started
        await asyncio.sleep(0.05)
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        t = time.perf_counter()
        await index.search(APP, new_query, limit=10)
        first = time.perf_counter() - t
        count = await index.count(APP)
        await index.stop()
    print(f"rebuild of {args.n} points {args.dim}-d -> {args.to}-d: {seconds:.1f} s "
          f"({moved / seconds:,.0f} points/s), {count} points after")
    print(f"search before:  {latency(before, 2)}")
    print(f"search during:  {latency(during, 2)}")
    print(f"writes during:  longest {1000 * max(waits, default=0):.1f} ms over {len(waits)} writes")
    print(f"first query on the new generation (plain search): {1000 * first:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2408)
    parser.add_argument("--to", type=int, default=1024)
    asyncio.run(main(parser.parse_args()))
