"""Search latency and throughput over HTTP, against the raw engine, at catalog scale.

    python bench/search.py [--n 100000] [--queries 300] [--uploads 60] [--clients 8]
                           [--seconds 10] [--ingest 600] [--model-cache DIR] [--data DIR]
                           [--env KEY=VALUE ...] [--profile OUT.txt [--profile-args='--gil']]

Loads N items through the real EdgeIndex (synthetic vectors of the model's dimension,
clustered and non-negative like pooled CNN features, with a keyword, an int and a float
field) and builds its HNSW graph; starts `magpie serve` on that data dir and measures over
HTTP (keep-alive, Basic auth): find-similar (`/search`, top 10) p50/p99 without and with a
filter (category + price range, about 1.7% of the catalog), upload search p50/p99 (a 400 px
JPEG: decode, embed, store, search), QPS of find-similar at `--clients` concurrent clients,
and find-similar p99 while an ingest of `--ingest` real images runs through the Data API
(into a second application, so the catalog's dimension need not be the model's), against
the idle p99 measured right before and right after it (600 images by default: about 20 s
and 1,000+ searches, so that the p99 is not a handful of samples).
Then it stops the server, opens the same shard in this process and times the raw engine
(qdrant-edge `EdgeShard.query`, same vectors, filters and exclusion) on the same queries.
`--data DIR` keeps the built catalog (minutes of HNSW build at 100k) for later runs; a kept
catalog of another dimension than the current model's skips upload search (`--uploads 0`
skips it too).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test fixtures live under the repo root
    sys.path.insert(0, str(ROOT))

from bench._profiling import py_spy  # noqa: E402
from tests.fixtures.catalog import encode, scene  # noqa: E402
from tests.fixtures.server import (  # noqa: E402
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    start_server,
    stop_server,
)

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "magpie" / "models"
FIELDS = [{"name": "category", "type": "string", "searchable": True},
          {"name": "year", "type": "int", "searchable": True},
          {"name": "price", "type": "float", "searchable": True}]
FQ = ["category:c3", "price:10,40"]
CHUNK = 1000


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def row(label: str, ms: list[float]) -> str:
    return f"  {label:<52} p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   (n={len(ms)})"


# --- the catalog ----------------------------------------------------------------------------

def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors in clusters of about 50, non-negative like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    centres = rng.random((max(1, n // 50), dim), dtype=np.float32) ** 3
    v = centres[rng.integers(0, len(centres), n)] + 0.15 * rng.random((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def payload(i: int) -> dict:
    return {"category": f"c{i % 20}", "year": 2000 + i % 25,
            "price": round(1 + (i * 7919 % 9900) / 100, 2),
            "@sys": {"im_url": f"http://img.example/{i}.jpg", "colors": []}}


async def load_index(data: Path, app_id: str, n: int, dim: int) -> tuple[float, float]:
    """Upsert n points and build the HNSW graph; (upsert s, optimise s)."""
    from magpie.common.events.control import FieldSpec
    from magpie.common.ports.index import IndexPoint
    from magpie.search.index.edge import EdgeIndex

    index = EdgeIndex(data / "index", optimize_after=0)
    await index.start()
    try:
        await index.ensure_collection(app_id, dim, [FieldSpec(**f) for f in FIELDS])
        t = time.perf_counter()
        for start in range(0, n, CHUNK):
            block = vectors(min(CHUNK, n - start), dim, seed=start)
            await index.upsert(app_id, [IndexPoint(f"im{start + k}", v.tolist(), payload(start + k))
                                        for k, v in enumerate(block)])
        upsert_s, t = time.perf_counter() - t, time.perf_counter()
        await index.optimize(app_id)
        return upsert_s, time.perf_counter() - t
    finally:
        await index.stop()


def prepare(data: Path, n: int, env: dict[str, str], cache: Path) -> tuple[dict, int]:
    """The application and the model's dimension; the catalog is built unless `data` has it."""
    from magpie.common.settings import Settings
    from magpie.embedding.registry import ModelRegistry

    marker = data / "bench.json"
    if marker.exists() and json.loads(marker.read_text())["n"] == n:
        saved = json.loads(marker.read_text())
        print(f"catalog: {n:,} items x {saved['dim']}-d, reused from {data}")
        return saved["app"], saved["dim"]
    shutil.rmtree(data, ignore_errors=True)
    server = start_server(data, env, timeout=180)
    try:
        app = create_app(server.url)
    finally:
        stop_server(server)
    dim = ModelRegistry.from_settings(Settings(data_dir=data, model_cache_dir=cache)).get().dim
    upsert_s, optimise_s = asyncio.run(load_index(data, app["app_id"], n, dim))
    print(f"catalog: {n:,} items x {dim}-d; upsert {upsert_s:.0f} s, HNSW build {optimise_s:.0f} s")
    marker.write_text(json.dumps({"n": n, "dim": dim, "app": app}))
    return app, dim


def model_dimension(data: Path, cache: Path) -> int:
    """The dimension of the model the server embeds with now."""
    from magpie.common.settings import Settings
    from magpie.embedding.registry import ModelRegistry

    return ModelRegistry.from_settings(Settings(data_dir=data, model_cache_dir=cache)).get().dim


# --- HTTP -------------------------------------------------------------------------------------

def create_app(url: str) -> dict:
    """A new application with the bench's schema."""
    login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    token = httpx.post(f"{url}/admin/v1/sessions", json=login).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    app = httpx.post(f"{url}/admin/v1/apps", json={"name": "Search bench"}, headers=headers).json()
    r = httpx.put(f"{url}/admin/v1/apps/{app['app_id']}/schema", headers=headers,
                  json={"fields": FIELDS})
    r.raise_for_status()
    return app


def timed(call: Callable[[], httpx.Response]) -> float:
    """ms of one call that must answer status OK."""
    t = time.perf_counter()
    r = call()
    ms = (time.perf_counter() - t) * 1000
    body = r.json()
    if body.get("status") != "OK":
        raise RuntimeError(f"search failed: {body}")
    return ms


def find_similar(client: httpx.Client, name: str, filtered: bool) -> httpx.Response:
    """GET /search, top 10, with or without the filter."""
    params = [("im_name", name), ("limit", "10")] + ([("fq", f) for f in FQ] if filtered else [])
    return client.get("/search", params=params)


def qps(url: str, auth: tuple[str, str], names: list[str], clients: int, seconds: float
        ) -> tuple[float, list[float]]:
    """Find-similar requests per second with `clients` clients in a loop; their latencies."""
    stop, latencies, lock = time.monotonic() + seconds, [], threading.Lock()

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, auth=auth) as client:
            i = k
            while time.monotonic() < stop:
                ms = timed(lambda: find_similar(client, names[i % len(names)], False))
                with lock:
                    latencies.append(ms)
                i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(latencies) / (time.perf_counter() - t), latencies


@contextlib.contextmanager
def serve_elsewhere(files: dict[str, bytes]) -> Iterator[str]:
    """Serve `files` from another process (`python -m http.server` on a temporary folder).

    The image hosts of a real ingest are other machines; served by threads of this process,
    every image sent competed for this process's GIL with the search client being timed, and
    that wait counted as search latency.
    """
    with tempfile.TemporaryDirectory(prefix="magpie-bench-images-") as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        command = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                   "--directory", folder]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            port = int(line.split(" port ")[1].split()[0])
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def during_ingest(url: str, auth: tuple[str, str], names: list[str], n: int
                  ) -> tuple[list[float], float, int]:
    """Find-similar latencies on the catalog while n real images go through fetch, embed and
    index into a second application; (latencies, ingest seconds, items that failed)."""
    seed = int(time.time()) % 1_000_000 * 1000  # new pictures each run: no cached vectors
    images = {f"{i}.jpg": encode(scene(seed + i, (320, 320)), "JPEG", quality=90)
              for i in range(n)}
    other = create_app(url)
    with (serve_elsewhere(images) as base,
          httpx.Client(base_url=url, auth=auth, timeout=60) as client,
          httpx.Client(base_url=url, auth=(other["access_key"], other["secret_key"]),
                       timeout=60) as loader):
        trans = []
        for start in range(0, n, 100):
            form = {}
            for k, i in enumerate(range(start, min(n, start + 100))):
                form |= {f"im_name[{k}]": f"new{seed + i}", f"im_url[{k}]": f"{base}/{i}.jpg",
                         f"category[{k}]": "c3", f"price[{k}]": "20.5", f"year[{k}]": "2020"}
            trans.append(loader.post("/insert", data=form).json()["trans_id"])
        t, ms, done, i = time.perf_counter(), [], False, 0
        while not done:
            ms.append(timed(lambda: find_similar(client, names[i % len(names)], False)))
            i += 1
            if i % 20 == 0:
                status = [loader.get(f"/insert/status/{tid}").json()["result"][0] for tid in trans]
                done = all(st["processed_percent"] == 100 for st in status)
        return ms, time.perf_counter() - t, sum(st["fail_count"] for st in status)


# --- the raw engine ---------------------------------------------------------------------------

def raw_engine(data: Path, app_id: str, names: list[str]) -> dict[str, list[float]]:
    """EdgeShard.query on the same shard, vectors, filters and exclusion as the server uses."""
    import qdrant_edge as qe
    from qdrant_edge import EdgeShard, Query, QueryRequest, RangeFloat

    from magpie.common.controlplane.schema_rules import Field
    from magpie.search.fq import parse_filters
    from magpie.search.index import build_filter, named, plan_filter, point_id

    meta = json.loads((data / "index" / app_id / "meta.json").read_text())
    shard = EdgeShard.load(str(data / "index" / app_id / f"shard-{meta['generation']}"))
    flt = parse_filters(FQ, [Field(f["name"], f["type"], True) for f in FIELDS])
    out: dict[str, list[float]] = {"plain": [], "filtered": [], "retrieve+query+count": []}
    try:
        for name in names:
            t = time.perf_counter()
            found = shard.retrieve([point_id(app_id, name)], with_payload=True, with_vector=True)
            vec = list(found[0].vector)
            t_retrieve = time.perf_counter() - t
            for label, f in (("plain", ()), ("filtered", flt)):
                engine = build_filter(qe, RangeFloat, plan_filter(f, meta["fields"]), [name])
                t = time.perf_counter()
                shard.query(QueryRequest(limit=10, query=Query.Nearest(vec), filter=engine,
                                         with_payload=True))
                out[label].append((time.perf_counter() - t) * 1000)
            # The total, as the adapter counts it: all points, less the query item.
            t = time.perf_counter()
            shard.count(qe.CountRequest(exact=False))
            itself = build_filter(qe, RangeFloat, named([], [name]))
            shard.count(qe.CountRequest(exact=True, filter=itself))
            engine_s = time.perf_counter() - t + t_retrieve
            out["retrieve+query+count"].append(out["plain"][-1] + engine_s * 1000)
    finally:
        shard.close()
    return out


# --- main -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog size (default 100,000)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ingest", type=int, default=600,
                        help="images ingested meanwhile (0: skip)")
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--data", type=Path, help="keep (and reuse) the catalog in this folder")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra server setting")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy during the ingest")
    parser.add_argument("--profile-args", default="", metavar="='--gil --threads'",
                        help="with --profile: more py-spy options (note the =)")
    args = parser.parse_args()
    args.model_cache.mkdir(parents=True, exist_ok=True)
    env = {"MAGPIE_MODEL_CACHE_DIR": str(args.model_cache), "MAGPIE_LOG_LEVEL": "WARNING",
           "MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true", "MAGPIE_SFTP_ENABLED": "false",
           # No automatic projection: it would fit and move the kept catalog mid-measurement.
           "MAGPIE_AUTO_PROJECTION": "false",
           **dict(kv.split("=", 1) for kv in args.env)}
    with tempfile.TemporaryDirectory(prefix="magpie-search-bench-") as tmp:
        data = args.data or Path(tmp) / "data"
        app, dim = prepare(data, args.n, env, args.model_cache)
        model_dim = model_dimension(data, args.model_cache)
        if args.uploads and dim != model_dim:
            print(f"the catalog is {dim}-d, the model now {model_dim}-d: upload search skipped")
            args.uploads = 0
        print(f"{len(os.sched_getaffinity(0))} cores; "
              f"load average {os.getloadavg()[0]:.1f} before the run")
        rng = np.random.default_rng(1)
        picked = rng.choice(args.n, size=2 * args.queries, replace=False)
        names = [f"im{i}" for i in picked[:args.queries]]
        warm = [f"im{i}" for i in picked[args.queries:]]
        uploads = [encode(scene(i, (400, 400)), "JPEG", quality=90) for i in range(args.uploads)]
        auth = (app["access_key"], app["secret_key"])
        server = start_server(data, env, timeout=180)
        try:
            with httpx.Client(base_url=server.url, auth=auth, timeout=60) as client:
                for k, name in enumerate(warm):  # warm-up on other items: page cache, connections
                    find_similar(client, name, bool(k % 2))
                if uploads:
                    client.post("/uploadsearch", files={"image": ("q.jpg", uploads[0], "image/jpeg")})
                plain = [timed(lambda: find_similar(client, n, False)) for n in names]
                filtered = [timed(lambda: find_similar(client, n, True)) for n in names]
                upload = [timed(lambda: client.post("/uploadsearch", data={"limit": "10"},
                                                    files={"image": ("q.jpg", u, "image/jpeg")}))
                          for u in uploads]
            rate, loaded = qps(server.url, auth, names, args.clients, args.seconds)
            ingest_ms, ingest_s, ingest_failed, idle_after = [], 0.0, 0, []
            if args.ingest:
                with py_spy(server.process.pid, args.profile, args.profile_args.split(), rate=100):
                    ingest_ms, ingest_s, ingest_failed = during_ingest(server.url, auth, names,
                                                                       args.ingest)
                with httpx.Client(base_url=server.url, auth=auth, timeout=60) as client:
                    idle_after = [timed(lambda: find_similar(client, n, False)) for n in names]
        finally:
            stop_server(server)
        raw = raw_engine(data, app["app_id"], names)
    print("over HTTP (magpie serve, one process):")
    print(row("find-similar", plain))
    print(row("find-similar, filtered (fq category + price range)", filtered))
    if upload:
        print(row("upload search (decode, embed, store, search)", upload))
    print(row(f"find-similar at {args.clients} clients", loaded) + f"   {rate:.0f} QPS")
    if ingest_ms:
        print(row(f"find-similar during an ingest of {args.ingest} images", ingest_ms)
              + f"   ingest took {ingest_s:.0f} s, {ingest_failed} failed")
        # One client in a loop: how many searches the ingest let through, and their mean.
        print(f"  {'':<52} p90 {pct(ingest_ms, 90):7.2f} ms   mean {statistics.mean(ingest_ms):6.2f} ms"
              f"   {len(ingest_ms) / ingest_s:.0f} searches/s meanwhile")
        print(row("find-similar, idle again right after", idle_after))
    print("raw engine (EdgeShard.query in this process, same queries):")
    print(row("query", raw["plain"]))
    print(row("query, filtered", raw["filtered"]))
    print(row("retrieve + query + count (a find-similar's engine work)",
              raw["retrieve+query+count"]))
    ratio = pct(plain, 50) / pct(raw["plain"], 50)
    print(f"ratios: find-similar p50 / raw query p50 = {ratio:.1f}x,"
          f" filtered {pct(filtered, 50) / pct(raw['filtered'], 50):.1f}x;"
          + (f" p99 during ingest / idle p99 = {pct(ingest_ms, 99) / pct(plain, 99):.1f}x"
             f" (/ idle-after p99 {pct(ingest_ms, 99) / pct(idle_after, 99):.1f}x)"
             if ingest_ms else ""))
    print(f"load average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    main()
