"""Benchmark of the embedded vector index (EdgeIndex): upserts, queries, background optimisation.

    python bench/index.py [--n 20000] [--dim 512] [--queries 200]

Random unit vectors with a keyword, an int and a float field. Prints upsert throughput,
ms per query (p50/p95, through the async API) plain and filtered, before and after
`optimize()`, its wall time, and query latency and the event loop's longest stall during it.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf, Between
from magpie.common.ports.index import IndexPoint
from magpie.search.index.edge import EdgeIndex

APP = "bench"
FIELDS = [
    FieldSpec(name="category", type="string", searchable=True),
    FieldSpec(name="year", type="int", searchable=True),
    FieldSpec(name="price", type="float", searchable=True),
]
# About 2% of the catalog: one category of 20, a third of the price range.
FILTER = (AnyOf("category", ("c3",)), Between("price", 10.0, 40.0))


def _points(n: int, dim: int, rng: np.random.Generator) -> list[IndexPoint]:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [IndexPoint(f"im{i}", vectors[i].tolist(),
                       {"category": f"c{i % 20}", "year": 2000 + i % 25,
                        "price": round(float(rng.uniform(1, 100)), 2)})
            for i in range(n)]


async def _latencies(index: EdgeIndex, queries: list[list[float]], filtered: bool) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        await index.search(APP, q, limit=10, filter=FILTER if filtered else ())
        out.append((time.perf_counter() - t) * 1000)
    return out


def _row(label: str, ms: list[float]) -> str:
    p95 = statistics.quantiles(ms, n=20)[-1] if len(ms) >= 2 else ms[0]
    return f"  {label:<34} p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


async def _query_table(index: EdgeIndex, queries: list[list[float]], when: str) -> None:
    for filtered in (False, True):
        label = f"{when}, {'filtered' if filtered else 'plain'}"
        print(_row(label, await _latencies(index, queries, filtered)))


async def main(n: int, dim: int, n_queries: int, batch: int) -> None:
    rng = np.random.default_rng(0)
    points = _points(n, dim, rng)
    queries = [p.vector for p in _points(n_queries, dim, rng)]
    with tempfile.TemporaryDirectory(prefix="magpie-bench-") as root:
        index = EdgeIndex(Path(root), optimize_after=0)  # optimised below, on demand
        await index.start()
        try:
            await index.ensure_collection(APP, dim, FIELDS)
            t = time.perf_counter()
            for i in range(0, n, batch):
                await index.upsert(APP, points[i:i + batch])
            upsert_s = time.perf_counter() - t
            print(f"EdgeIndex, {n} points x {dim}-d, top-10, filter {FILTER}")
            print(f"  upsert: {n / upsert_s:,.0f} points/s (batches of {batch}, {upsert_s:.1f} s)")
            await _query_table(index, queries, "before optimize")

            # Optimise in the background under light traffic (a query every 20 ms); note the
            # event loop's longest stall.
            loop, stall, during = asyncio.get_running_loop(), 0.0, []
            t = time.perf_counter()
            task = asyncio.create_task(index.optimize(APP))
            while not task.done():
                tick = loop.time()
                await asyncio.sleep(0.02)
                stall = max(stall, loop.time() - tick - 0.02)
                during += await _latencies(index, queries[len(during) % n_queries:][:1], False)
            changed = await task
            optimize_s = time.perf_counter() - t
            info = await index.info(APP)
            print(f"  optimize: {optimize_s:.1f} s (changed: {changed}, {info}),"
                  f" longest event-loop stall {stall * 1000:.0f} ms")
            print(_row("during optimize, plain", during))
            await _query_table(index, queries, "after optimize")
        finally:
            await index.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="points (default 20,000)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="points per upsert call")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.dim, args.queries, args.batch))
