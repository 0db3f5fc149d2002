"""Colour search designs compared at catalog scale: a colour-vector collection vs payload.

    python bench/colors.py [--n 100000] [--queries 100]

(a) what Magpie does: a second collection per application holding a 125-d colour vector per
item (magpie.search.colors), searched by the engine like any vector, filters included;
(b) the alternative of no second collection: read every item's dominant colours from the
payload (an engine scroll) and rank them in numpy for each query;
(c) (b) with the colour matrix cached in memory, which every search process would have to
build at start and keep in step with ingest. Prints ms per top-10 query.
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
from magpie.common.ports.index import IndexPoint
from magpie.search.colors import COLOR_DIM, color_vector, item_color_vector
from magpie.search.index.edge import EdgeIndex, _qe

APP = "colors"


def palettes(n: int, rng: np.random.Generator) -> list[list[str]]:
    """Five dominant colours per item, as image-fetch extracts them."""
    rgb = rng.integers(0, 256, size=(n, 5, 3))
    return [[f"{r:02x}{g:02x}{b:02x}" for r, g, b in item] for item in rgb]


def ms(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples):8.2f} ms   max {max(samples):8.2f} ms"


async def main(n: int, n_queries: int) -> None:
    rng = np.random.default_rng(0)
    items = palettes(n, rng)
    queries = [f"{c:06x}" for c in rng.integers(0, 0xFFFFFF, n_queries)]
    with tempfile.TemporaryDirectory() as root:
        index = EdgeIndex(Path(root), optimize_after=0)
        await index.start()
        brand = FieldSpec(name="brand", type="string", searchable=True)
        await index.ensure_collection(APP, COLOR_DIM, [brand])
        t = time.perf_counter()
        for start in range(0, n, 1000):
            await index.upsert(APP, [IndexPoint(f"i{start + k}", item_color_vector(c),
                                                {"brand": "b", "@sys": {"colors": c}})
                                     for k, c in enumerate(items[start:start + 1000])])
        print(f"{n:,} items; colour vectors built and upserted in {time.perf_counter() - t:.1f} s")
        a: list[float] = []
        b: list[float] = []
        c: list[float] = []
        for q in queries:
            t = time.perf_counter()
            await index.search(APP, color_vector([(q, 100)]), limit=10)
            a.append((time.perf_counter() - t) * 1000)
        await index.optimize(APP)
        a_hnsw = []
        for q in queries:
            t = time.perf_counter()
            await index.search(APP, color_vector([(q, 100)]), limit=10)
            a_hnsw.append((time.perf_counter() - t) * 1000)
        shard = index._apps[APP].shard  # noqa: SLF001 - a benchmark reads the engine directly
        qe = _qe()
        for q in queries[:10]:  # slow: a few are enough
            t = time.perf_counter()
            records, offset = [], None
            while True:
                page, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=10_000,
                                                             with_payload=True, with_vector=False))
                records += page
                if offset is None:
                    break
            matrix = np.array([item_color_vector(r.payload["@sys"]["colors"]) for r in records])
            np.argsort(-(matrix @ np.array(color_vector([(q, 100)]))))[:10]
            b.append((time.perf_counter() - t) * 1000)
        cached = np.array([item_color_vector(p) for p in items], dtype=np.float32)
        for q in queries:
            t = time.perf_counter()
            scores = cached @ np.array(color_vector([(q, 100)]), dtype=np.float32)
            np.argpartition(-scores, 10)[:10]
            c.append((time.perf_counter() - t) * 1000)
        await index.stop()
    print(f"  (a) colour collection, plain       {ms(a)}")
    print(f"  (a) colour collection, HNSW        {ms(a_hnsw)}")
    print(f"  (b) payload scroll + numpy         {ms(b)}")
    size = f"{cached.nbytes / 2**20:.0f} MiB per process"
    print(f"  (c) in-memory matrix + numpy       {ms(c)}   ({size})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.queries))
