"""Benchmark of shopper analytics: tracking throughput end to end, report latency over 10M
stored events, and the embedded store (chdb) itself.

    python bench/analytics.py [--parts track,report,store] [--requests 200] [--clients 4]
                              [--pixel-n 5000] [--pixel-clients 8] [--report-n 10000000]
                              [--n 1000000] [--apps 3] [--days 30] [--dup 0.02] [--store-n 100000]
                              [--env KEY=VALUE ...] [--profile OUT.txt] [--pixel-profile OUT.txt]
                              [--profile-args='--threads --gil'] [--keep]

`track`: starts `magpie serve` on a fresh data dir (chdb, in-process bus) and sends
- `--requests` batches of 1,000 distinct events (70% views, 20% clicks, 7% add-to-cart, 3%
  transactions) to `POST /v3/events` from `--clients` concurrent keep-alive connections;
- `--pixel-n` single events to `GET /v3/__va.gif` from `--pixel-clients` connections;
each timed twice: until every request is answered (HTTP), and until the report
(`GET /v1/analytics/report`, polled) counts every accepted event, i.e. through the bus, the
handler and the buffered writer into ClickHouse (end to end). The client is a minimal raw
HTTP/1.1 client with pre-encoded requests, so that the bench process takes as little of the
machine's CPU as it can; the CPU used by the server, the bench and the rest of the machine is
printed beside each rate. Target: >= 20,000 events/s batched on 2 cores.

`report`: stops that server and loads `--report-n` synthetic events (one application, 30 days,
5 per search, `--report-n`/5 searches of which 25% uploadsearch) straight into the server's own
chdb tables with the generator of `store` below (INSERT ... SELECT FROM numbers), day after
day, each day followed by its `dup` share of retried deliveries: the layout a server builds.
Once background merges have settled it times each report query through the store (first call
and best of 3), restarts the server and times the full report (all solutions and one) and the
usage statistics through the HTTP API. Last, the worst moment: a bulk re-delivery of `dup` of
the whole month as one part overlapping every other, and the full report right after it,
before any merge. Target: any report over 10M events <= 1 s.

`store`: the embedded store on its own: N events generated inside the engine, the daily
funnel with FINAL (what the store runs), without dedup (wrong when duplicates exist: shown for
its cost), deduplicating with uniqExact(event_id); the full report, for all solutions and for
one; CSV and Parquet exports; the same after OPTIMIZE ... FINAL; and the write path
(`store-n` EventTracked models -> JSONEachRow -> chdb).

The machine may be shared: the load average is printed with every part, and the server's CPU
per 1,000 events (split by thread: Python's main thread, ClickHouse's pools) is the figure
least sensitive to other load; run it twice. `--profile` / `--pixel-profile` record the
server with py-spy (`pip install py-spy`) during the batched / pixel phase.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# Run as a script from anywhere: the test fixtures (start_server) live under the repo root.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from magpie.analytics import reports  # noqa: E402
from magpie.analytics.store import sql  # noqa: E402
from magpie.analytics.store.chdb_store import ChdbAnalyticsStore  # noqa: E402
from magpie.common.events.analytics import EventTracked  # noqa: E402
from magpie.common.ports.analytics import ReportQuery  # noqa: E402
from bench._profiling import py_spy  # noqa: E402
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD, start_server, stop_server  # noqa: E402

START = date(2024, 6, 1)
BATCH_TARGET = 20_000  # events/s, batched, 2 cores
REPORT_TARGET_S = 1.0  # any report over 10M events
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "magpie" / "models"
APP_EXPR = "concat('app', toString(intDiv(number, 5) % {apps}))"
GENERATE = """INSERT INTO {db}.events (app_id, action, event_id, ts, query_id, pid, pos, uid, sid, value,
                         currency, received_at)
SELECT {app} AS app_id,
       multiIf(h < 70, 'product_view', h < 90, 'product_click', h < 97, 'add_to_cart',
               'transaction') AS action,
       toString(number) AS event_id,
       toDateTime64('{start} 00:00:00', 3, 'UTC')
           + toIntervalMillisecond(cityHash64(intDiv(number, 5)) % {span} + number % 5 * 1000) AS ts,
       concat('q', toString(intDiv(number, 5))) AS query_id,
       concat('p', toString(cityHash64(number, 2) % 10000)) AS pid,
       if(action = 'product_click', 1 + cityHash64(number, 3) % 40, 0) AS pos,
       concat('u', toString(intDiv(number, 20))) AS uid, concat('s', toString(intDiv(number, 10))) AS sid,
       if(action = 'transaction', (cityHash64(number, 4) % 20000) / 100, NULL) AS value,
       if(action = 'transaction', 'USD', '') AS currency, ts AS received_at
FROM (SELECT number, cityHash64(number) % 100 AS h FROM numbers({n}){where})"""
# The events of one day (their search's day), for loading in time order as a server would.
ONE_DAY = " WHERE intDiv(cityHash64(intDiv(number, 5)) % {span}, 86400000) = {day}"
SEARCH_APP_EXPR = "concat('app', toString(number % {apps}))"
SEARCHES = """INSERT INTO {db}.searches (app_id, method, solution, reqid, ts, result_count, first_pos,
                           im_names, received_at)
SELECT {app}, if(number % 4 = 0, 'uploadsearch', 'search'), '',
       concat('q', toString(number)),
       toDateTime64('{start} 00:00:00', 3, 'UTC') + toIntervalMillisecond(cityHash64(number) % {span}),
       20, 1, [], now64(3)
FROM numbers({searches})"""
RETRIES = "INSERT INTO {db}.events SELECT * FROM {db}.events WHERE cityHash64(event_id) % 10000 < {per10k}"
DAY_RETRIES = ("INSERT INTO {db}.events SELECT * FROM {db}.events WHERE date = toDate('{start}') + {day} "
               "AND cityHash64(event_id) % 10000 < {per10k}")
MERGES = "SELECT count() AS merges FROM system.merges WHERE database = {database:String}"
PARTS = ("SELECT count() AS parts, sum(rows) AS rows FROM system.parts "
         "WHERE database = {database:String} AND table = 'events' AND active")
UNIQ_FUNNEL = (sql.EVENT_FUNNEL.replace(" FINAL", "")
               .replace("countIf(action", "uniqExactIf(event_id, action"))


# --- the figures table --------------------------------------------------------------------------

@dataclass
class Figures:
    """Every figure of the run, printed as one table at the end."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.rows.append((title, "", ""))
        print(f"\n== {title}  (load average {loadavg()})", flush=True)

    def add(self, label: str, value: str, note: str = "") -> None:
        self.rows.append(("  " + label, value, note))
        print(f"  {label:<60} {value:>16}  {note}", flush=True)

    def print(self) -> None:
        figures = [r for r in self.rows if r[1] or r[2]]
        width = max(len(r[0]) for r in figures)
        vwidth = max(len(r[1]) for r in figures)
        line = "-" * (width + vwidth + 70)
        print(f"\n{line}\nAnalytics bench, {os.cpu_count()} cores, load average now {loadavg()}\n{line}")
        for label, value, note in self.rows:
            print(f"{label:<{width}}  {value:>{vwidth}}  {note}" if value or note else label)
        print(line)


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


# --- process and machine counters ---------------------------------------------------------------

def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (all processes) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid` by thread name (digits dropped: pools add up)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        key = "python main thread" if task.name == str(pid) else re.sub(r"[\d_-]+$", "", name) or name
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


@dataclass
class Usage:
    """CPU used during a phase, in cores: by the server, this process, the rest of the machine."""

    wall: float
    server: float
    bench: float
    others: float
    threads: dict[str, float]  # server CPU seconds by thread

    @staticmethod
    def mark(pid: int) -> tuple[float, float, float, float, dict[str, float]]:
        return time.perf_counter(), cpu_seconds(pid), cpu_seconds(), machine_busy_seconds(), thread_cpu(pid)

    @classmethod
    def since(cls, pid: int, start: tuple[float, float, float, float, dict[str, float]]) -> Usage:
        wall = time.perf_counter() - start[0]
        server, bench = cpu_seconds(pid) - start[1], cpu_seconds() - start[2]
        machine = machine_busy_seconds() - start[3]
        threads = {k: v - start[4].get(k, 0.0) for k, v in thread_cpu(pid).items()}
        return cls(wall, server / wall, bench / wall, max(0.0, machine - server - bench) / wall,
                   {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.05})

    def text(self, server: bool = True) -> str:
        if not server:  # the engine runs in this process
            return f"CPU cores: bench (chdb) {self.bench:.2f}, others {self.others:.2f}"
        return f"CPU cores: server {self.server:.2f}, bench {self.bench:.2f}, others {self.others:.2f}"

    def per_event(self, events: int) -> tuple[str, str]:
        """Server CPU per 1,000 events, split by thread."""
        split = ", ".join(f"{k} {1e6 * v / events:.0f}" for k, v in list(self.threads.items())[:4])
        return f"{1e6 * self.server * self.wall / events:,.0f} ms", split




# --- a minimal HTTP/1.1 client ----------------------------------------------------------------------

class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests: far less client CPU per
    request than a full client library, so the machine's cores go to the server measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked: the report routes answer JSON with a length; nothing else is read here
            raise RuntimeError(f"unexpected response without Content-Length: {headers}")
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


def http_request(method: str, target: str, host: str, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> bytes:
    """A pre-encoded request."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Target:
    """The server, an application's keys, and how to ask for its report."""

    host: str
    port: int
    app_key: str
    basic: str  # "Basic ..." for the secret-key routes

    def report_request(self, days: tuple[date, date], solution: str = "") -> bytes:
        params = {"from": days[0].isoformat(), "to": days[1].isoformat()}
        if solution:
            params["solution"] = solution
        return http_request("GET", f"/v1/analytics/report?{urlencode(params)}", self.host,
                            headers={"Authorization": self.basic})

    def usage_request(self, days: tuple[date, date]) -> bytes:
        params = urlencode({"from": days[0].isoformat(), "to": days[1].isoformat()})
        return http_request("GET", f"/v1/usage?{params}", self.host, headers={"Authorization": self.basic})


def server_address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def new_app(url: str, name: str) -> Target:
    """Sign in as the owner and create an application: its tracker code and secret-key auth."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        r = await client.post("/admin/v1/sessions", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        r.raise_for_status()
        r = await client.post("/admin/v1/apps", json={"name": name},
                              headers={"Authorization": f"Bearer {r.json()['token']}"})
        r.raise_for_status()
        app = r.json()
    host, port = server_address(url)
    basic = "Basic " + base64.b64encode(f"{app['access_key']}:{app['secret_key']}".encode()).decode()
    target = Target(host, port, app["app_key"], basic)
    target.app_id = app["app_id"]  # type: ignore[attr-defined]
    return target


# --- synthetic tracking traffic -------------------------------------------------------------------

def synthetic_event(n: int, ts: int) -> dict[str, Any]:
    """Event `n` of a stream: 5 per search, 70% views, 20% clicks, 7% carts, 3% purchases."""
    h = (n * 2_654_435_761) % 100
    query = f"bq{n // 5:09d}"
    common = {"queryId": query, "uid": f"u{n // 20}", "sid": f"s{n // 10}", "ts": ts}
    if h < 70:
        return {"action": "product_view", "pid": f"p{(n * 7919) % 10_000}", **common}
    if h < 90:
        return {"action": "product_click", "pid": f"p{(n * 7919) % 10_000}", "pos": 1 + n % 40, **common}
    if h < 97:
        return {"action": "add_to_cart", "pid": f"p{(n * 7919) % 10_000}", **common}
    return {"action": "transaction", "value": round(5 + (n % 20_000) / 100, 2), "currency": "USD",
            "transId": f"t{n}", **common}


@dataclass
class Phase:
    """One timed sending phase."""

    events: int
    accepted: int
    http_s: float
    e2e_s: float
    usage: Usage
    latencies: list[float]


async def send_all(target: Target, requests: list[bytes], clients: int,
                   check: Callable[[int, dict[str, str], bytes], int]) -> tuple[int, list[float]]:
    """Send every request over `clients` connections; the accepted events and each latency."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    accepted = 0
    latencies: list[float] = []

    async def client() -> None:
        nonlocal accepted
        conn = Connection(target.host, target.port)
        try:
            while not queue.empty():
                raw = queue.get_nowait()
                t = time.perf_counter()
                status, headers, body = await conn.request(raw)
                latencies.append(time.perf_counter() - t)
                accepted += check(status, headers, body)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return accepted, latencies


async def counted(target: Target, days: tuple[date, date]) -> int:
    """How many funnel events the report counts now."""
    conn = Connection(target.host, target.port)
    try:
        status, _, body = await conn.request(target.report_request(days))
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"report answered {status}: {body[:300]!r}")
    t = json.loads(body)["totals"]
    return t["views"] + t["clicks"] + t["add_to_carts"] + t["transactions"]


async def until_counted(target: Target, days: tuple[date, date], want: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (got := await counted(target, days)) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the report counts {got} of {want} events after {timeout}s")
        await asyncio.sleep(0.1)


async def timed_phase(pid: int, target: Target, requests: list[bytes], clients: int, events: int,
                      check: Callable[[int, dict[str, str], bytes], int], days: tuple[date, date],
                      already: int = 0, profile: Path | None = None, profile_args: str = "") -> Phase:
    """Send `requests`; time until answered, then until the report counts them (on top of
    `already` events counted before)."""
    with py_spy(pid, profile, profile_args.split()):
        mark = Usage.mark(pid)
        accepted, latencies = await send_all(target, requests, clients, check)
        http_s = time.perf_counter() - mark[0]
        await until_counted(target, days, already + accepted)
        usage = Usage.since(pid, mark)
    return Phase(events, accepted, http_s, usage.wall, usage, latencies)


def batch_requests(target: Target, n_requests: int, per_request: int, ts: int) -> list[bytes]:
    out = []
    for r in range(n_requests):
        events = [synthetic_event(r * per_request + i, ts + r * per_request + i) for i in range(per_request)]
        body = json.dumps({"sdk": "bench", "events": events}, separators=(",", ":")).encode()
        out.append(http_request("POST", f"/v3/events?code={target.app_key}", target.host, body))
    return out


def pixel_requests(target: Target, n: int, ts: int) -> list[bytes]:
    return [http_request("GET", "/v3/__va.gif?" + urlencode(
        {"code": target.app_key, **{k: str(v) for k, v in synthetic_event(i, ts + i).items()}}), target.host)
        for i in range(n)]


def batch_check(status: int, headers: dict[str, str], body: bytes) -> int:
    answer = json.loads(body)
    if status != 200 or answer["status"] != "OK":
        raise RuntimeError(f"batch refused: {status} {body[:500]!r}")
    return len(answer["result"])


def pixel_check(status: int, headers: dict[str, str], body: bytes) -> int:
    if status != 200 or headers.get("x-tracking") != "accepted":
        raise RuntimeError(f"pixel refused: {status} {headers}")
    return 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def settle(pid: int, quiet_cores: float = 0.15, timeout: float = 60) -> None:
    """Wait until the server is idle (it loads the image model in the background at start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(pid) - before < quiet_cores:
            return


async def track_part(args: argparse.Namespace, data_dir: Path, figures: Figures) -> Target:
    """Tracking throughput: batch endpoint, then pixel endpoint, end to end."""
    env = {"MAGPIE_MODEL_CACHE_DIR": str(args.model_cache), **dict(kv.split("=", 1) for kv in args.env)}
    server = start_server(data_dir, env, timeout=180)
    pid = server.process.pid
    try:
        batch_app = await new_app(server.url, "Batch bench")
        pixel_app = await new_app(server.url, "Pixel bench")
        await settle(pid)
        now = int(time.time() * 1000) - 3_600_000  # an hour ago: well inside the accepted window
        today = datetime.now(UTC).date()
        days = (today - timedelta(days=1), today)
        per_request = 1000
        # A warm-up batch (first-request costs), counted before the clock starts.
        warm = batch_requests(batch_app, 1, per_request, now - 10_000_000)
        await send_all(batch_app, warm, 1, batch_check)
        await until_counted(batch_app, days, per_request)
        requests = batch_requests(batch_app, args.requests, per_request, now)
        figures.section(f"Tracking, batch POST /v3/events: {args.requests} requests x {per_request} events, "
                        f"{args.clients} clients, magpie serve (chdb, in-process bus)")
        batch = await timed_phase(pid, batch_app, requests, args.clients, args.requests * per_request,
                                  batch_check, days, per_request, args.profile, args.profile_args)
        batch_rate = batch.accepted / batch.e2e_s
        figures.add("events accepted / sent", f"{batch.accepted:,} / {batch.events:,}")
        figures.add("HTTP: all requests answered", f"{batch.accepted / batch.http_s:,.0f} ev/s",
                    f"{batch.http_s:.2f} s; per request p50 {ms(percentile(batch.latencies, 50))}, "
                    f"p95 {ms(percentile(batch.latencies, 95))}")
        figures.add("end to end: all counted in the report", f"{batch_rate:,.0f} ev/s",
                    f"{batch.e2e_s:.2f} s; target >= {BATCH_TARGET:,}: {verdict(batch_rate >= BATCH_TARGET)}")
        figures.add("CPU during the phase", "", batch.usage.text())
        figures.add("server CPU per 1,000 events", *batch.usage.per_event(batch.accepted))

        pixels = pixel_requests(pixel_app, args.pixel_n, now)
        figures.section(f"Tracking, pixel GET /v3/__va.gif: {args.pixel_n:,} events, {args.pixel_clients} clients")
        pixel = await timed_phase(pid, pixel_app, pixels, args.pixel_clients, args.pixel_n, pixel_check, days,
                                  profile=args.pixel_profile, profile_args=args.profile_args)
        figures.add("events accepted / sent", f"{pixel.accepted:,} / {pixel.events:,}")
        figures.add("HTTP: all requests answered", f"{pixel.accepted / pixel.http_s:,.0f} ev/s",
                    f"{pixel.http_s:.2f} s; per request p50 {ms(percentile(pixel.latencies, 50))}, "
                    f"p95 {ms(percentile(pixel.latencies, 95))}")
        figures.add("end to end: all counted in the report", f"{pixel.accepted / pixel.e2e_s:,.0f} ev/s",
                    f"{pixel.e2e_s:.2f} s")
        figures.add("CPU during the phase", "", pixel.usage.text())
        figures.add("server CPU per event", f"{1000 * pixel.usage.server * pixel.e2e_s / pixel.accepted:.2f} ms")
        return batch_app
    finally:
        stop_server(server)


# --- reports over 10M events ----------------------------------------------------------------------

async def load(store: ChdbAnalyticsStore, *, n: int, days: int, dup: float, app: str, search_app: str,
               figures: Figures | None = None) -> None:
    """N synthetic events, N/5 searches and a `dup` share of retried deliveries, in the engine,
    in one go: every part spans the whole month, and the retries are one more such part (the
    layout right after a bulk import or a bulk re-delivery, before merges)."""
    fill = {"start": START.isoformat(), "span": days * 86_400_000, "n": n, "searches": n // 5,
            "per10k": int(dup * 10_000), "where": ""}
    steps = (("insert events (INSERT SELECT)", GENERATE.replace("{app}", app)),
             ("insert searches", SEARCHES.replace("{app}", search_app)),
             ("re-insert retried deliveries", RETRIES))
    for label, template in steps:
        t = time.perf_counter()
        await store._command(sql.render(template.format(db="{db}", **fill), store.database), {})
        seconds = time.perf_counter() - t
        if figures is not None:
            figures.add(label, ms(seconds))
        else:
            timed(label, seconds)


async def load_daily(store: ChdbAnalyticsStore, *, n: int, days: int, dup: float, app: str,
                     figures: Figures) -> None:
    """The same synthetic events, inserted day after day, each day followed by its retried
    deliveries: the layout a server builds (parts of a few days, duplicates near their
    originals) once background merges have caught up."""
    fill = {"start": START.isoformat(), "span": days * 86_400_000, "n": n, "searches": n // 5,
            "per10k": int(dup * 10_000)}
    t = time.perf_counter()
    for day in range(days):
        where = ONE_DAY.format(span=fill["span"], day=day)
        for template in (GENERATE.replace("{app}", app), DAY_RETRIES):
            await store._command(sql.render(template.format(db="{db}", day=day, where=where, **fill),
                                            store.database), {})
    figures.add("insert events day by day (+ retries)", ms(time.perf_counter() - t))
    t = time.perf_counter()
    await store._command(sql.render(SEARCHES.replace("{app}", app).format(db="{db}", **fill),
                                    store.database), {})
    figures.add("insert searches", ms(time.perf_counter() - t))


async def settle_merges(store: ChdbAnalyticsStore, timeout: float = 300) -> float:
    """Wait until no background merge has run for two seconds; the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    while quiet < 4 and time.perf_counter() - started < timeout:
        doc = await store._select(MERGES, {"database": store.database})
        quiet = quiet + 1 if int(doc["data"][0]["merges"]) == 0 else 0
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def parts(store: ChdbAnalyticsStore) -> str:
    row = (await store._select(PARTS, {"database": store.database}))["data"][0]
    return f"{int(row['rows'] or 0):,} rows in {row['parts']} active parts"


@dataclass
class Timing:
    """Wall time of the first call and the fastest of a few; the least CPU one call took in
    the process answering (the engine's threads included): what a loaded machine changes least."""

    first: float
    best: float
    cpu: float

    def value(self) -> str:
        return ms(self.best)

    def note(self, extra: str = "") -> str:
        ok = max(self.first, self.best) <= REPORT_TARGET_S
        return f"first {ms(self.first)}; CPU {ms(self.cpu)}; {verdict(ok)}" + (f"; {extra}" if extra else "")


async def first_and_best(fn: Callable[[], Awaitable[Any]], runs: int = 3,
                         pid: int | str = "self") -> tuple[Timing, Any]:
    """The timing of `runs` calls of `fn` (CPU read from process `pid`), and the last result."""
    times, cpus, result = [], [], None
    for _ in range(runs):
        cpu, t = cpu_seconds(pid), time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t)
        cpus.append(cpu_seconds(pid) - cpu)
    return Timing(times[0], min(times), min(cpus)), result


def report_queries(store: ChdbAnalyticsStore, q: ReportQuery) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each query of a report, and the full report, through the store."""
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "funnel by day (views..purchases, rank)": lambda: store.event_funnel(q),
        "search volume by day": lambda: store.search_volume(q),
        "revenue by currency": lambda: store.revenue(q),
        "click histogram": lambda: store.click_histogram(q),
        "top products": lambda: store.top_products(q),
        "full report (in process)": lambda: reports.report(store, q),
    }
    if not q.solution:
        queries["usage statistics"] = (
            lambda: store.usage(q.app_id, q.date_from, q.date_to))
    return queries


async def report_part(args: argparse.Namespace, data_dir: Path, target: Target | None,
                      figures: Figures) -> None:
    """Report latency over `--report-n` events loaded into the server's own store."""
    env = {"MAGPIE_MODEL_CACHE_DIR": str(args.model_cache), **dict(kv.split("=", 1) for kv in args.env)}
    if target is None:
        server = start_server(data_dir, env, timeout=180)
        try:
            target = await new_app(server.url, "Report bench")
        finally:
            stop_server(server)
    app_id = target.app_id  # type: ignore[attr-defined]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", app_id):
        raise ValueError(f"unexpected app id {app_id!r}")
    span = (START, START + timedelta(days=args.days - 1))
    figures.section(f"Reports over {args.report_n:,} stored events: one application, {args.days} days, "
                    f"{args.report_n // 5:,} searches (25% uploadsearch), {args.dup:.0%} delivered twice; "
                    "chdb; first call and best of 3")
    store = ChdbAnalyticsStore(data_dir / "analytics")  # the server's store: same folder, same database
    await store.start()
    try:
        await load_daily(store, n=args.report_n, days=args.days, dup=args.dup, app=f"'{app_id}'",
                         figures=figures)
        waited = await settle_merges(store)
        figures.add("events table once merges settled", f"{waited:.0f} s", await parts(store))
        mark = Usage.mark(os.getpid())
        for solution in ("", "uploadsearch"):
            label = f"solution={solution}" if solution else "all solutions"
            for name, fn in report_queries(store, ReportQuery(app_id, *span, solution)).items():
                timing, _ = await first_and_best(fn)
                figures.add(f"{name}, {label}", timing.value(), timing.note())
        figures.add("CPU during these timings", "", Usage.since(os.getpid(), mark).text(server=False))
    finally:
        await store.stop()

    server = start_server(data_dir, env, timeout=180)
    try:
        await settle(server.process.pid)
        host, port = server_address(server.url)
        target = Target(host, port, target.app_key, target.basic)
        conn = Connection(host, port)
        mark = Usage.mark(server.process.pid)
        try:
            requests = {"GET /v1/analytics/report, all solutions": target.report_request(span),
                        "GET /v1/analytics/report?solution=uploadsearch":
                            target.report_request(span, "uploadsearch"),
                        "GET /v1/usage": target.usage_request(span)}
            for name, raw in requests.items():
                async def call(raw: bytes = raw, name: str = name) -> dict[str, Any]:
                    status, _, body = await conn.request(raw)
                    if status != 200:
                        raise RuntimeError(f"{name}: {status} {body[:300]!r}")
                    return json.loads(body)
                timing, body = await first_and_best(call, pid=server.process.pid)
                totals = body.get("totals", {})
                if "views" in totals:
                    events = totals["views"] + totals["clicks"] + totals["add_to_carts"] + totals["transactions"]
                    what = f"{events:,} events, {totals['searches']:,} searches, ctr {totals['ctr']}"
                else:
                    what = f"{sum(totals.get('events', {}).values()):,} events"
                figures.add(name, timing.value(), timing.note(what))
            figures.add("CPU during these timings", "", Usage.since(server.process.pid, mark).text())
        finally:
            await conn.close()
    finally:
        stop_server(server)

    # The worst moment: a bulk re-delivery (say a replayed bus topic) of `dup` of the month,
    # as one part overlapping every other, before any merge: FINAL has to merge it all.
    store = ChdbAnalyticsStore(data_dir / "analytics")
    await store.start()
    try:
        fill = {"per10k": int(args.dup * 10_000)}
        t = time.perf_counter()
        await store._command(sql.render(RETRIES.format(db="{db}", **fill), store.database), {})
        figures.add(f"bulk re-delivery of {args.dup:.0%} of the month, one part", ms(time.perf_counter() - t),
                    await parts(store))
        mark = Usage.mark(os.getpid())
        for solution in ("", "uploadsearch"):
            q = ReportQuery(app_id, *span, solution)
            timing, rep = await first_and_best(lambda q=q: reports.report(store, q))
            label = f"solution={solution}" if solution else "all solutions"
            figures.add(f"full report right after (in process), {label}", timing.value(),
                        timing.note(f"views {rep['totals']['views']:,} (deduplicated)"))
        figures.add("CPU during these timings", "", Usage.since(os.getpid(), mark).text(server=False))
    finally:
        await store.stop()


# --- the embedded store on its own ------------------------------------------------------------------

def timed(label: str, seconds: float, extra: str = "") -> None:
    """Print one figure."""
    print(f"  {label:<46} {seconds * 1000:9.1f} ms {extra}")


async def best_of(fn, runs: int = 3) -> tuple[float, object]:
    """The fastest of `runs` calls (the machine is shared), with the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        result = await fn()
        best = min(best, time.perf_counter() - t)
    return best, result


async def queries(store: ChdbAnalyticsStore, q: ReportQuery) -> None:
    """Time the report's queries and the dedup alternatives."""
    params = {"app_id": q.app_id, "date_from": q.date_from.isoformat(), "date_to": q.date_to.isoformat(),
              "solution": ""}
    variants = {"daily funnel, FINAL (the store's query)": sql.EVENT_FUNNEL,
                "daily funnel, no dedup": sql.EVENT_FUNNEL.replace(" FINAL", ""),
                "daily funnel, uniqExact(event_id) dedup": UNIQ_FUNNEL}
    for label, template in variants.items():
        seconds, doc = await best_of(lambda t=template: store._select(t, params))
        total = [r for r in doc["data"] if r["date"] is None][0]
        timed(label, seconds, f"clicks={total['clicks']} views={total['views']}")
    seconds, rep = await best_of(lambda: reports.report(store, q))
    t = rep["totals"]
    timed("full report (5 queries)", seconds,
          f"searches={t['searches']} ctr={t['ctr']} atc={t['add_to_cart_rate']} conv={t['conversion_rate']} "
          f"rank={t['click_rank']}")
    one = ReportQuery(q.app_id, q.date_from, q.date_to, solution="uploadsearch")
    seconds, rep = await best_of(lambda: reports.report(store, one))
    timed("full report, solution=uploadsearch", seconds,
          f"searches={rep['totals']['searches']} ctr={rep['totals']['ctr']}")
    for fmt in ("csv", "parquet"):
        async def export(fmt=fmt) -> int:
            return sum([len(c) async for c in store.export_events(q.app_id, q.date_from, q.date_to, fmt)])
        seconds, size = await best_of(export, runs=1)
        timed(f"export {fmt}", seconds, f"{size / 1e6:.1f} MB")


async def store_part(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n== The embedded store on its own  (load average {loadavg()})")
    store = ChdbAnalyticsStore(tmp / "analytics", database="bench")
    await store.start()
    print(f"chdb, {args.n:,} events over {args.days} days and {args.apps} apps")
    await load(store, n=args.n, days=args.days, dup=args.dup, app=APP_EXPR.format(apps=args.apps),
               search_app=SEARCH_APP_EXPR.format(apps=args.apps))
    q = ReportQuery("app0", START, START + timedelta(days=args.days - 1))
    print(f"one application's month ({args.n // args.apps:,} events + retries), best of 3:")
    await queries(store, q)
    t = time.perf_counter()
    await store._command(sql.render("OPTIMIZE TABLE {db}.events FINAL", store.database), {})
    timed("OPTIMIZE TABLE events FINAL", time.perf_counter() - t)
    print("after the merge:")
    await queries(store, q)

    t = time.perf_counter()
    events = [EventTracked(app_id="app9", action="product_click", ts=1_718_000_000_000 + i,
                           query_id=f"q{i // 5}", pid=f"p{i % 1000}", pos=1 + i % 30, uid=f"u{i // 20}")
              for i in range(args.store_n)]
    built = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, len(events), 1000):  # as the bus hands them over, in small groups
        await store.insert_events(events[start:start + 1000])
    await store.flush()
    written = time.perf_counter() - t
    print(f"store write path, {args.store_n:,} events:")
    timed("build EventTracked models", built, f"{args.store_n / built:,.0f}/s")
    timed("insert_events + flush (JSONEachRow)", written, f"{args.store_n / written:,.0f}/s")
    await store.stop()


async def main(args: argparse.Namespace) -> None:
    parts = set(args.parts.split(","))
    figures = Figures()
    tmp = Path(tempfile.mkdtemp(prefix="magpie-analytics-bench-"))
    try:
        target = None
        if "track" in parts:
            target = await track_part(args, tmp / "data", figures)
        if "report" in parts:
            await report_part(args, tmp / "data", target, figures)
        if figures.rows:
            figures.print()
        if "store" in parts:
            await store_part(args, tmp / "store")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="track,report,store", help="comma-separated: track,report,store")
    parser.add_argument("--requests", type=int, default=200, help="batch requests of 1,000 events")
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch clients")
    parser.add_argument("--pixel-n", type=int, default=5000, help="pixel requests (one event each)")
    parser.add_argument("--pixel-clients", type=int, default=8, help="concurrent pixel clients")
    parser.add_argument("--report-n", type=int, default=10_000_000, help="stored events for the report part")
    parser.add_argument("--n", type=int, default=1_000_000, help="events of the store part")
    parser.add_argument("--apps", type=int, default=3, help="applications of the store part")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dup", type=float, default=0.02, help="share of events delivered twice")
    parser.add_argument("--store-n", type=int, default=100_000)
    parser.add_argument("--model-cache", type=Path, default=Path(
        os.environ.get("MAGPIE_MODEL_CACHE_DIR", DEFAULT_CACHE)), help="exported-model cache")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra server setting, e.g. MAGPIE_BUS_WORKERS=8")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy during the batched phase")
    parser.add_argument("--pixel-profile", type=Path, default=None,
                        help="record the server with py-spy during the pixel phase")
    parser.add_argument("--profile-args", default="", metavar="='--gil --threads'",
                        help="with --profile: more py-spy options (note the =)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (server logs)")
    asyncio.run(main(parser.parse_args()))
