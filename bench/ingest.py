"""End-to-end ingest throughput of the standalone server, against the raw embedder.

    python bench/ingest.py [--n 2000] [--batch 100] [--concurrency 4] [--fresh 20]
                           [--raw-n 512] [--raw-nice 10] [--model-cache DIR] [--env KEY=VALUE ...]
                           [--profile OUT.txt [--profile-args='--gil']]

Serves N distinct synthetic product pictures (JPEG, 300-600 px) from a local HTTP server,
starts `magpie serve` on a fresh data dir, inserts every item through the Data API
(`POST /insert`, `--batch` items per call, `--concurrency` calls in flight) and polls
`/insert/status` until every item is indexed. Right before and after that, it times the same
ONNX model, loaded in this process from the same cache, on the same decoded images at batch
32 (the server idle meanwhile), on a thread at the OS priority the server's ingest threads
run at (`--raw-nice`, default 10, with the SCHED_IDLE policy the server's default
`MAGPIE_INGEST_PRIORITY=idle` adds; 0 for a normal-priority figure: it matters only while
other processes compete for the cores). Last it measures the
freshness of single-item inserts on an idle server (status polled every 20 ms), and prints
a table with the server's peak RSS and the CPU the server, this process and the rest of the
machine used meanwhile (other work on the machine makes every rate noisy).
`--profile` records the server with py-spy (collapsed stacks) during the bulk insert: install
it with `pip install py-spy` (or point $PY_SPY at its binary); it needs ptrace rights.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Run as a script from anywhere: the test fixtures (start_server) live under the repo root.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._profiling import py_spy  # noqa: E402
from tests.fixtures.http import running  # noqa: E402
from tests.fixtures.server import (  # noqa: E402
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    start_server,
    stop_server,
)

RAW_BATCH = 32
FRESH_POLL_S = 0.02
BULK_POLL_S = 0.1
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "magpie" / "models"
WORDS = ("AURA", "NOVA", "KITE", "ORCA", "PINE", "LUMA", "ZEST", "MOSS", "FERN", "IRIS")


# --- synthetic catalog ------------------------------------------------------------------

def product_jpeg(i: int) -> bytes:
    """Picture `i`: a product-like shape with a label on a studio-like gradient (JPEG)."""
    rng = np.random.default_rng(i)
    w, h = (int(v) for v in rng.integers(300, 601, 2))
    light = rng.integers(200, 256, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    background = light * (1 - 0.25 * ramp) * np.ones((h, w, 1))
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    accent = tuple(int(c) for c in rng.integers(0, 256, 3))
    x0, y0 = int(w * rng.uniform(0.1, 0.3)), int(h * rng.uniform(0.1, 0.3))
    x1, y1 = int(w * rng.uniform(0.7, 0.9)), int(h * rng.uniform(0.7, 0.9))
    kind = i % 4
    if kind == 0:  # a bottle: body and neck
        neck, shoulder, middle = (x1 - x0) // 4, y0 + (y1 - y0) // 4, (x0 + x1) // 2
        draw.rounded_rectangle([x0, shoulder, x1, y1], radius=neck, fill=colour)
        draw.rectangle([middle - neck // 2, y0, middle + neck // 2, shoulder], fill=accent)
    elif kind == 1:  # a shirt: body and sleeves
        s = (x1 - x0) // 4  # sleeve
        draw.polygon([(x0, y0 + s), (x0 + s, y0), (x1 - s, y0), (x1, y0 + s),
                      (x1 - s // 2, y0 + 2 * s), (x1 - s, y0 + s), (x1 - s, y1), (x0 + s, y1),
                      (x0 + s, y0 + s), (x0 + s // 2, y0 + 2 * s)], fill=colour)
    elif kind == 2:  # a bag or a ball
        draw.ellipse([x0, y0, x1, y1], fill=colour, outline=accent, width=6)
    else:  # a box with stripes
        draw.rectangle([x0, y0, x1, y1], fill=colour)
        for x in range(x0, x1, int(rng.integers(10, 40))):
            draw.line([(x, y0), (x, y1)], fill=accent, width=3)
    label = f"{WORDS[i % len(WORDS)]} {i}"
    draw.text(((x0 + x1) // 2 - 30, (y0 + y1) // 2), label, fill=accent, font=_font())
    # Sensor-like grain: flat synthetic shapes would make JPEGs (and their decode) unusually cheap.
    grain = rng.normal(0, 6, (h, w, 1))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@functools.lru_cache(maxsize=1)
def _font():  # noqa: ANN202 - a Pillow font
    return ImageFont.load_default()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ImageServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        name = self.path.rsplit("/", 1)[-1].removesuffix(".jpg")
        body = self.server.images.get(int(name)) if name.isdigit() else None
        status, ctype = (200, "image/jpeg") if body is not None else (404, "text/plain")
        body = body if body is not None else b"not found"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    images: dict[int, bytes]


@contextlib.contextmanager
def serve_images(images: dict[int, bytes]) -> Iterator[str]:
    """Serve `images[i]` at /img/<i>.jpg on a free loopback port; yields the base URL."""
    server = _ImageServer(("127.0.0.1", 0), _Handler)
    server.images = images
    with running(server, "image-server") as port:
        yield f"http://127.0.0.1:{port}"


# --- process and machine counters ---------------------------------------------------------

def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_seconds(pid: int | str = "self") -> float:
    """Kernel-mode CPU seconds of a process (file writes, fsync, sockets)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadSample:
    """One thread of a process at one moment: its OS-level name, CPU seconds, context switches."""

    comm: str
    cpu: float
    switches: int


def thread_samples(pid: int) -> dict[int, ThreadSample]:
    """Every live thread of a process, from /proc (a thread that ends meanwhile is skipped)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
            status = (task / "status").read_text().splitlines()
        except OSError:
            continue
        # "voluntary_ctxt_switches:" and "nonvoluntary_ctxt_switches:"
        switches = sum(int(line.split()[1]) for line in status
                       if line.split(":", 1)[0].endswith("ctxt_switches"))
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[int(task.name)] = ThreadSample(comm, cpu, switches)
    return out


def by_thread_group(pid: int, before: dict[int, ThreadSample]) -> tuple[dict[str, float], int]:
    """CPU seconds since `before` per thread group (the OS name less its pool index; the main
    thread is the event loop, unnamed threads such as SQLite's inherit the process name), and
    the context switches since `before` (threads started meanwhile counted from zero)."""
    groups: dict[str, float] = {}
    switches = 0
    for tid, now in thread_samples(pid).items():
        then = before.get(tid, ThreadSample(now.comm, 0.0, 0))
        group = "event loop" if tid == pid else re.sub(r"_\d+$", "", now.comm)
        groups[group] = groups.get(group, 0.0) + now.cpu - then.cpu
        switches += now.switches - then.switches
    return dict(sorted(groups.items(), key=lambda kv: -kv[1])), switches


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (all processes) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a live process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Usage:
    """CPU used during a phase: by the server, by this process, by everything on the machine."""

    wall: float
    server: float
    bench: float
    machine: float
    server_sys: float = 0.0
    switches: float = 0.0  # the server's context switches
    by_thread: dict[str, float] = field(default_factory=dict)  # CPU seconds per thread group

    @classmethod
    def during(cls, pid: int, start: tuple[float, ...]) -> Usage:
        wall, server, bench, machine, server_sys, threads = start
        groups, switches = by_thread_group(pid, threads)
        return cls(time.perf_counter() - wall, cpu_seconds(pid) - server, cpu_seconds() - bench,
                   machine_busy_seconds() - machine, system_seconds(pid) - server_sys,
                   switches, groups)

    @staticmethod
    def mark(pid: int) -> tuple[float, ...]:
        return (time.perf_counter(), cpu_seconds(pid), cpu_seconds(), machine_busy_seconds(),
                system_seconds(pid), thread_samples(pid))

    def cores(self, cpu: float) -> str:
        return f"{cpu / self.wall:4.2f} cores"


# --- the Data API -------------------------------------------------------------------------

async def create_app(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A new application with a small schema: (app_id, access_key, secret_key)."""
    r = await client.post("/admin/v1/sessions",
                          json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.post("/admin/v1/apps", json={"name": "Ingest bench"}, headers=headers)
    r.raise_for_status()
    app = r.json()
    fields = [{"name": "brand", "type": "string", "searchable": True},
              {"name": "price", "type": "float", "searchable": True}]
    r = await client.put(f"/admin/v1/apps/{app['app_id']}/schema", headers=headers,
                         json={"fields": fields})
    r.raise_for_status()
    return app["app_id"], app["access_key"], app["secret_key"]


def insert_form(base: str, ids: range | list[int]) -> dict[str, str]:
    """The `/insert` form of items `ids`: im_name, im_url and two schema fields each."""
    form: dict[str, str] = {}
    for k, i in enumerate(ids):
        form[f"im_name[{k}]"] = f"item-{i}"
        form[f"im_url[{k}]"] = f"{base}/img/{i}.jpg"
        form[f"brand[{k}]"] = WORDS[i % len(WORDS)]
        form[f"price[{k}]"] = f"{5 + i % 200}.99"
    return form


async def insert(client: httpx.AsyncClient, form: dict[str, str]) -> int:
    """POST /insert; the transaction id."""
    r = await client.post("/insert", data=form)
    body = r.json()
    if r.status_code != 200 or body.get("status") == "fail" or "trans_id" not in body:
        raise RuntimeError(f"insert refused: {r.status_code} {body}")
    return int(body["trans_id"])


async def wait_done(client: httpx.AsyncClient, trans_id: int, interval: float,
                    timeout: float = 900) -> dict:
    """Poll /insert/status until processed_percent is 100; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/insert/status/{trans_id}", params={"error_limit": 5})
        result = r.json()["result"][0]
        if result["processed_percent"] == 100:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"transaction {trans_id} not done after {timeout}s: {result}")
        await asyncio.sleep(interval)


@dataclass
class BulkResult:
    seconds: float
    ok: int
    failed: int
    errors: list[dict]


async def bulk_insert(client: httpx.AsyncClient, base: str, ids: list[int], batch: int,
                      concurrency: int) -> BulkResult:
    """Insert `ids` in batches, `concurrency` calls in flight; time until all are indexed.

    Transactions are polled one at a time, oldest first: they finish roughly in order, and
    polling every open one would load the server being measured.
    """
    trans_ids: asyncio.Queue[int | None] = asyncio.Queue()
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def send(chunk: list[int]) -> int:
        async with gate:
            return await insert(client, insert_form(base, chunk))

    async def submit() -> None:
        chunks = [ids[i:i + batch] for i in range(0, len(ids), batch)]
        tasks = [asyncio.create_task(send(chunk)) for chunk in chunks]
        for task in tasks:  # queued in submission order, as they answer
            trans_ids.put_nowait(await task)
        trans_ids.put_nowait(None)

    submitter = asyncio.create_task(submit())
    ok = failed = 0
    errors: list[dict] = []
    while (trans_id := await trans_ids.get()) is not None:
        result = await wait_done(client, trans_id, BULK_POLL_S)
        ok, failed = ok + result["success_count"], failed + result["fail_count"]
        errors.extend(result["error_list"])
    await submitter
    return BulkResult(time.perf_counter() - started, ok, failed, errors)


async def freshness(client: httpx.AsyncClient, base: str, ids: list[int]) -> list[float]:
    """Seconds from POST /insert of one item to its status saying indexed, one at a time."""
    out = []
    for i in ids:
        started = time.perf_counter()
        result = await wait_done(client, await insert(client, insert_form(base, [i])), FRESH_POLL_S)
        out.append(time.perf_counter() - started)
        if result["success_count"] != 1:
            raise RuntimeError(f"single insert of item {i} failed: {result}")
        await asyncio.sleep(0.2)  # idle between inserts: no batch to join
    return out


# --- the raw model ------------------------------------------------------------------------

def load_embedder(data_dir: Path, cache: Path):  # noqa: ANN201 - an ImageEmbedder
    """The default model as the server loads it: same settings, same cache (exports once)."""
    from magpie.common.settings import Settings
    from magpie.embedding.registry import ModelRegistry

    settings = Settings(data_dir=data_dir, model_cache_dir=cache)
    return ModelRegistry.from_settings(settings).get("general")


@dataclass
class Raw:
    """The raw embedder's rate and its CPU cost per image (less sensitive to other load)."""

    rate: float
    cpu_ms: float


def raw_rate(embedder, images: list[Image.Image]) -> Raw:  # noqa: ANN001
    """Images/s of `embedder.embed` (preprocessing + model) at batch 32, after a warm-up."""
    embedder.embed(images[:RAW_BATCH])
    # The whole process's CPU: onnxruntime's pool threads work for this thread.
    started, cpu = time.perf_counter(), cpu_seconds()
    for i in range(0, len(images), RAW_BATCH):
        embedder.embed(images[i:i + RAW_BATCH])
    return Raw(len(images) / (time.perf_counter() - started),
               1000 * (cpu_seconds() - cpu) / len(images))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99), inclusive method: exact for small samples."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def latency(seconds: list[float], digits: int = 1) -> str:
    """p50 and p99 of latencies in seconds, in ms, with the sample count."""
    if not seconds:
        return "n/a"
    ms = [1000 * s for s in seconds]
    return (f"p50 {percentile(ms, 50):6.{digits}f} ms  p99 {percentile(ms, 99):6.{digits}f} ms"
            f"  (n={len(ms)})")


# --- profiling ------------------------------------------------------------------------------



# --- main -----------------------------------------------------------------------------------

def start(data: Path, env: dict[str, str], tries: int = 3):  # noqa: ANN201 - a Server
    """`magpie serve`, started again when another process took its free port meanwhile."""
    for attempt in range(tries):
        try:
            return start_server(data, env, timeout=180)
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == tries - 1:
                raise
            shutil.rmtree(data, ignore_errors=True)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    ids = list(range(args.n))
    fresh_ids = list(range(args.n, args.n + args.fresh))
    warm_id = args.n + args.fresh
    started = time.perf_counter()
    images = {i: product_jpeg(i) for i in [*ids, *fresh_ids, warm_id]}
    print(f"generated {len(images)} JPEGs in {time.perf_counter() - started:.1f} s "
          f"({sum(map(len, images.values())) / len(images) / 1024:.0f} KiB each on average)",
          file=sys.stderr)
    args.model_cache.mkdir(parents=True, exist_ok=True)
    # Exported here if needed, so that the server's start does not include an export.
    # The raw model runs at the priority the server gives its embedding (`--raw-nice`,
    # the ingest threads' nice by default, with their SCHED_IDLE policy when above 0);
    # loaded on that thread, so that onnxruntime's pool threads inherit it, as in the server.
    from magpie.common.pipeline import low_priority_executor

    raw_pool = low_priority_executor(1, "raw-embedder", args.raw_nice, idle=args.raw_nice > 0)
    embedder = raw_pool.submit(load_embedder, tmp / "bench-data", args.model_cache).result()
    sample = [decode(images[i]) for i in ids[:args.raw_n]]

    env = {"MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true",
           "MAGPIE_MODEL_CACHE_DIR": str(args.model_cache),
           # No SFTP listener: its fixed port clashes with other servers on the machine.
           "MAGPIE_SFTP_ENABLED": "false",
           # No automatic projection: a fit at rest would compete with what is measured.
           "MAGPIE_AUTO_PROJECTION": "false",
           **dict(kv.split("=", 1) for kv in args.env)}
    server = start(tmp / "data", env)
    pid = server.process.pid
    try:
        with serve_images(images) as base:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as admin:
                app_id, access, secret = await create_app(admin)
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            async with httpx.AsyncClient(base_url=server.url, auth=(access, secret), timeout=300,
                                         limits=limits) as client:
                # Model loaded and collection created before the clock starts.
                await wait_done(client, await insert(client, insert_form(base, [warm_id])), 0.1)
                raw_before = raw_pool.submit(raw_rate, embedder, sample).result()
                mark = Usage.mark(pid)
                with py_spy(pid, args.profile, args.profile_args.split(), rate=50):
                    bulk = await bulk_insert(client, base, ids, args.batch, args.concurrency)
                usage = Usage.during(pid, mark)
                raw_after = raw_pool.submit(raw_rate, embedder, sample).result()
                fresh = await freshness(client, base, fresh_ids)
        rss = vm_hwm_mib(pid)
    finally:
        stop_server(server)
    report(args, app_id, bulk, usage, (raw_before, raw_after), fresh, rss)


def report(args: argparse.Namespace, app_id: str, bulk: BulkResult, usage: Usage,
           raw: tuple[Raw, Raw], fresh: list[float], rss: float) -> None:
    e2e = bulk.ok / bulk.seconds
    raw_rate_ = statistics.mean(r.rate for r in raw)
    raw_cpu = statistics.mean(r.cpu_ms for r in raw)
    server_cpu = 1000 * usage.server / max(bulk.ok, 1)
    others = max(0.0, usage.machine - usage.server - usage.bench)
    rows = [
        ("images inserted / indexed / failed", f"{args.n} / {bulk.ok} / {bulk.failed}"),
        ("batches x concurrency", f"{args.batch} items x {args.concurrency} in flight"),
        ("end to end, insert -> all indexed", f"{e2e:8.1f} images/s  ({bulk.seconds:.1f} s)"),
        ("raw embedder, batch 32, before",
         f"{raw[0].rate:8.1f} images/s  (n={args.raw_n}, nice {args.raw_nice})"),
        ("raw embedder, batch 32, after", f"{raw[1].rate:8.1f} images/s"),
        ("end to end / raw (target >= 90 %)", f"{100 * e2e / raw_rate_:8.1f} %"),
        ("CPU per image: server, end to end", f"{server_cpu:8.1f} ms"),
        ("  of which in the kernel", f"{1000 * usage.server_sys / max(bulk.ok, 1):8.1f} ms"),
        ("  context switches per image", f"{usage.switches / max(bulk.ok, 1):8.1f}"),
        *((f"  in the {group}" if group == "event loop" else f"  in {group} threads",
           f"{per_image:8.1f} ms")
          for group, seconds in usage.by_thread.items()
          if (per_image := 1000 * seconds / max(bulk.ok, 1)) >= 0.05),
        ("CPU per image: raw embedder", f"{raw_cpu:8.1f} ms"),
        ("raw / server CPU per image",
         f"{100 * raw_cpu / server_cpu:8.1f} %  (CPU time: less load-sensitive)"),
        (f"freshness, 1 item, idle (n={len(fresh)})",
         f"p50 {1000 * percentile(fresh, 50):.0f} ms   p95 {1000 * percentile(fresh, 95):.0f} ms   "
         f"max {1000 * max(fresh):.0f} ms"),
        ("server peak RSS (VmHWM)", f"{rss:8.0f} MiB"),
        ("CPU during bulk: server", usage.cores(usage.server)),
        ("CPU during bulk: bench process", usage.cores(usage.bench) + "  (image server, client)"),
        ("CPU during bulk: rest of machine", usage.cores(others) + f"  of {os.cpu_count()} cores"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nIngest bench, app {app_id}, model cache {args.model_cache}")
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 40))
    for err in bulk.errors[:5]:
        print(f"  error: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images in the bulk insert")
    parser.add_argument("--batch", type=int, default=100, help="items per /insert call (max 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="/insert calls in flight")
    parser.add_argument("--fresh", type=int, default=20, help="single-item inserts for freshness")
    parser.add_argument("--raw-n", type=int, default=512, help="images for each raw-model timing")
    parser.add_argument("--raw-nice", type=int, default=10,
                        help="nice of the raw-model timing (default: the server's ingest threads')")
    parser.add_argument("--model-cache", type=Path, default=Path(
        os.environ.get("MAGPIE_MODEL_CACHE_DIR", DEFAULT_CACHE)), help="exported-model cache")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra server setting, e.g. MAGPIE_EMBEDDING_BATCH_SIZE=64")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy during the bulk insert")
    parser.add_argument("--profile-args", default="", metavar="='--gil --threads'",
                        help="with --profile: more py-spy options (note the =)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (server log)")
    parser.add_argument("--distributed", action="store_true", help="standalone against the "
                        "distributed mode with 1 and 2 embedding workers (bench/ingest_distributed.py)")
    args = parser.parse_args()
    args.raw_n = max(1, min(args.raw_n, args.n))
    tmp = Path(tempfile.mkdtemp(prefix="magpie-ingest-bench-"))
    try:
        if args.distributed:
            from bench.ingest_distributed import run_distributed

            asyncio.run(run_distributed(args, tmp))
        else:
            asyncio.run(run(args, tmp))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
