"""`bench/ingest.py --distributed`: ingest throughput of the distributed mode with one and with
two embedding workers, against the standalone server, in the same run on the same images.

Each mode gets a fresh stack: standalone is `magpie serve`; distributed is every service as
`magpie run ...` on a Tansu broker with the control plane on a throwaway PostgreSQL cluster
(tests/fixtures/stack.py). In each, one warm-up item loads the models, then `--n` items go
through `POST /insert` (`--batch` per call, `--concurrency` in flight) and the clock stops when
every item is indexed. CPU seconds per image are read from /proc for every service process,
which says where each service's cost lies and so how it scales.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.ingest import (
    bulk_insert,
    cpu_seconds,
    create_app,
    insert,
    insert_form,
    load_embedder,
    machine_busy_seconds,
    product_jpeg,
    serve_images,
    start,
    wait_done,
)
from tests.fixtures.kafka import start_tansu
from tests.fixtures.server import stop_server
from tests.fixtures.stack import Stack, new_database, postgres_cluster

PARTITIONS = 6


@dataclass
class Run:
    """One mode's result: images/s until all indexed, and CPU seconds per service."""

    mode: str
    ok: int
    failed: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    query_ms: list[float] = field(default_factory=list)  # find-similar latencies, idle

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


async def _measure(url: str, base: str, ids: list[int], args: argparse.Namespace,
                   pids: dict[str, int], mode: str) -> Run:
    async with httpx.AsyncClient(base_url=url, timeout=120) as admin:
        _, access, secret = await create_app(admin)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, auth=(access, secret), timeout=300,
                                 limits=limits) as client:
        warm = ids[-1] + 1  # models loaded and collection created before the clock starts
        await wait_done(client, await insert(client, insert_form(base, [warm])), 0.1)
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        busy = machine_busy_seconds()
        bulk = await bulk_insert(client, base, ids, args.batch, args.concurrency)
        cpu = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
        busy = machine_busy_seconds() - busy
        latencies = await _queries(client, ids)
    return Run(mode, bulk.ok, bulk.failed, bulk.seconds, cpu, busy, latencies)


async def _queries(client: httpx.AsyncClient, ids: list[int], n: int = 200) -> list[float]:
    """Find-similar latencies, one request at a time once the ingest is over: the cost of
    the gateway → search hop in the distributed mode."""
    out = []
    for k in range(n):
        started = time.perf_counter()
        r = await client.get("/search", params={"im_name": f"item-{ids[k % len(ids)]}", "limit": 10})
        out.append(1000 * (time.perf_counter() - started))
        if r.json().get("status") != "OK":
            raise RuntimeError(f"search failed: {r.text[:300]}")
    return out


async def _standalone(args: argparse.Namespace, tmp: Path, base: str, ids: list[int]) -> Run:
    env = {"MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true", "MAGPIE_MODEL_CACHE_DIR": str(args.model_cache),
           "MAGPIE_SFTP_ENABLED": "false", "MAGPIE_KAFKA_PARTITIONS": str(PARTITIONS),
           "MAGPIE_AUTO_PROJECTION": "false"}
    server = start(tmp / "standalone", env)
    try:
        return await _measure(server.url, base, ids, args, {"serve": server.process.pid}, "standalone")
    finally:
        stop_server(server)


async def _distributed(args: argparse.Namespace, tmp: Path, base: str, ids: list[int],
                       workers: int, pg_url: str) -> Run:
    with start_tansu() as broker:
        stack = Stack(tmp / f"dist-{workers}", broker.bootstrap, new_database(pg_url),
                      args.model_cache, partitions=PARTITIONS)
        stack.root.mkdir(parents=True, exist_ok=True)
        try:
            stack.start(services=("gateway", "ingestion", "image-fetch", "embedding", "search",
                                  "analytics"), embedding_workers=workers)
            pids = {k: p.process.pid for k, p in stack.procs.items()}
            return await _measure(stack.url, base, ids, args, pids,
                                  f"distributed, {workers} embedding worker{'s' * (workers > 1)}")
        finally:
            stack.stop()


def _report(runs: list[Run], n: int) -> None:
    base = runs[0].rate
    print(f"\nIngest, {n} images, {PARTITIONS} partitions, {os.cpu_count()} cores")
    print("-" * 150)
    for r in runs:
        # On a shared machine the cores Magpie got vary from run to run: say how many it had.
        used = sum(r.cpu.values()) / r.seconds
        print(f"{r.mode:<34} {r.rate:6.1f} images/s ({r.seconds:5.1f} s, {r.ok} ok, {r.failed} failed)"
              f" {100 * r.rate / base:4.0f} % of standalone; Magpie used {used:4.2f} cores,"
              f" {r.ok / max(sum(r.cpu.values()), 1e-9):5.1f} images per CPU-second;"
              f" machine busy {r.machine / r.seconds:4.2f}")
    print("-" * 150)
    print("find-similar over HTTP after the ingest, one at a time (ms):")
    for r in runs:
        q = sorted(r.query_ms)
        print(f"  {r.mode:<34} p50 {q[len(q) // 2]:6.1f}   p99 {q[int(len(q) * 0.99) - 1]:6.1f}")
    print("CPU per image by process (ms):")
    for r in runs:
        parts = ", ".join(f"{k} {1000 * v / max(r.ok, 1):.1f}" for k, v in r.cpu.items())
        print(f"  {r.mode:<34} {parts}")


async def run_distributed(args: argparse.Namespace, tmp: Path) -> None:
    """Standalone, then distributed with one and with two embedding workers; the table."""
    ids = list(range(args.n))
    images = {i: product_jpeg(i) for i in [*ids, args.n]}
    args.model_cache.mkdir(parents=True, exist_ok=True)
    load_embedder(tmp / "bench-data", args.model_cache)  # export once, before any clock
    runs: list[Run] = []
    with serve_images(images) as base, postgres_cluster() as pg_url:
        started = time.perf_counter()
        runs.append(await _standalone(args, tmp, base, ids))
        for workers in (1, 2):
            runs.append(await _distributed(args, tmp, base, ids, workers, pg_url))
        print(f"(whole run {time.perf_counter() - started:.0f} s)")
    _report(runs, args.n)
