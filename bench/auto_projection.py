"""What the automatic catalog projection costs a running server, and what searches see meanwhile.

    python bench/auto_projection.py [--n 1000] [--check-s 5] [--qps 20]

Starts `magpie serve` with `MAGPIE_AUTO_PROJECTION_MIN_ITEMS=--n`, inserts `--n` synthetic
product pictures (served from another process's loopback HTTP server), then searches
(find-similar, one client, `--qps` a second; 0: without pause) until the server's log says
the application moved to its projection. Prints the fit's own duration (from that log line), the server's CPU seconds
spent from the end of the ingest to the swap, and find-similar latency p50/p99 at rest before
the fit and while it ran.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test fixtures live under the repo root
    sys.path.insert(0, str(ROOT))

from bench.ingest import cpu_seconds, latency  # noqa: E402
from tests.fixtures.catalog import encode, scene, serve_files  # noqa: E402
from tests.fixtures.server import new_application, start_server, stop_server, wait_transaction  # noqa: E402

DONE = re.compile(r"auto projection: \S+ now searches through a projection fitted on (\d+) "
                  r"items \((\d+)-d, (\d+) points moved, ([\d.]+) s\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--check-s", type=float, default=5.0)
    parser.add_argument("--qps", type=float, default=20.0, help="searches a second (0: no pause)")
    parser.add_argument("--model-cache", type=Path, default=Path.home() / ".cache" / "magpie" / "models")
    args = parser.parse_args()
    pictures = {f"p{i}.jpg": encode(scene(9000 + i), "JPEG", quality=90) for i in range(args.n)}
    env = {"MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true", "MAGPIE_MODEL_CACHE_DIR": str(args.model_cache),
           "MAGPIE_SFTP_ENABLED": "false", "MAGPIE_AUTO_PROJECTION_MIN_ITEMS": str(args.n),
           "MAGPIE_AUTO_PROJECTION_CHECK_S": str(args.check_s)}
    with tempfile.TemporaryDirectory(prefix="magpie-autoproj-") as tmp, serve_files(pictures) as images:
        server = start_server(Path(tmp) / "data", env, timeout=120)
        try:
            app = new_application(server.url, "Bench")
            auth = (app["access_key"], app["secret_key"])
            for start in range(0, args.n, 100):
                form = {}
                for i, name in enumerate(f"p{j}" for j in range(start, min(start + 100, args.n))):
                    form[f"im_name[{i}]"], form[f"im_url[{i}]"] = name, f"{images}/{name}.jpg"
                trans = httpx.post(f"{server.url}/insert", data=form, auth=auth).json()["trans_id"]
                wait_transaction(server.url, auth, trans, timeout=600)
            cpu0, at_rest, during = cpu_seconds(server.process.pid), [], []
            with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
                deadline = time.monotonic() + 1800
                while (found := DONE.search(server.log())) is None:
                    if time.monotonic() > deadline:
                        raise SystemExit("no projection was fitted in 30 min")
                    t = time.perf_counter()
                    answer = client.get("/search", params={"im_name": f"p{len(at_rest) % args.n}"})
                    elapsed = time.perf_counter() - t
                    assert answer.json()["status"] == "OK", answer.text
                    fitting = "auto projection: fitting" in server.log()
                    (during if fitting else at_rest).append(elapsed)
                    if args.qps > 0:
                        time.sleep(max(0.0, 1 / args.qps - elapsed))
            cpu = cpu_seconds(server.process.pid) - cpu0
        finally:
            stop_server(server)
    items, dim, moved, seconds = found.groups()
    print(f"fit on {items} items -> {dim}-d, {moved} points moved: {float(seconds):.1f} s (server log)")
    print(f"server CPU from the end of the ingest to the swap: {cpu:.1f} s")
    print(f"find-similar at rest:      {latency(at_rest)}")
    print(f"find-similar during the fit: {latency(during)}")


if __name__ == "__main__":
    main()
