"""Retrieval quality through a running server, with the automatic catalog projection.

    python bench/quality_server.py [--limit N] [--check-s 5]

The same data as bench/quality.py (the twitter and facebook emoji sets only; the other
vendors are held out and never read): the facebook drawings are inserted through
`POST /insert` into `magpie serve` with its defaults but the automatic projection off, and
every twitter drawing and every photo-like picture is sent to `POST /uploadsearch`; then the
server is started again on the same data with the automatic projection on
(`MAGPIE_AUTO_PROJECTION_MIN_ITEMS` at most the catalog size), the bench waits until it has
fitted and moved the catalog (its log line), and sends the same queries. Prints recall@1 /
recall@10 of each set before the projection (raw model, upload views) and after it: the
figures a storefront gets, end to end.
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
if str(ROOT) not in sys.path:  # run as a script: bench/quality.py and the test fixtures
    sys.path.insert(0, str(ROOT))

from bench.quality import DEFAULT_CACHE, SEED, fetch, load_items, photo_like  # noqa: E402
from tests.fixtures.catalog import serve_files  # noqa: E402
from tests.fixtures.server import new_application, start_server, stop_server, wait_transaction  # noqa: E402

MOVED = re.compile(r"auto projection: \S+ now searches through a projection fitted on (\d+) items \((\d+)-d")


def recall(url: str, auth: tuple[str, str], queries: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Recall@1 and @10 of upload searches: each query looks for the item named with it."""
    r1 = r10 = 0
    with httpx.Client(base_url=url, auth=auth, timeout=60) as client:
        for name, picture in queries:
            found = client.post("/uploadsearch", data={"limit": "10"},
                                files={"image": ("q.png", picture, "image/png")}).json()
            assert found["status"] == "OK", found
            names = [hit["im_name"] for hit in found["result"]]
            r1 += bool(names) and names[0] == name
            r10 += name in names
    return r1 / len(queries), r10 / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="emoji to use (seeded subset)")
    parser.add_argument("--check-s", type=float, default=5.0)
    parser.add_argument("--model-cache", type=Path, default=Path.home() / ".cache" / "magpie" / "models")
    args = parser.parse_args()
    items = load_items(fetch(DEFAULT_CACHE), args.limit)
    names = {it.code: f"e{i}" for i, it in enumerate(items)}  # im_name: letters and digits
    files = {f"{names[it.code]}.png": it.files["facebook"].read_bytes() for it in items}
    sets = {
        "tw->fb": [(names[it.code], it.files["twitter"].read_bytes()) for it in items],
        "photo": [(names[it.code], photo_like(it.files["facebook"], SEED * 100_003 + i))
                  for i, it in enumerate(items)],
    }
    env = {"MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true", "MAGPIE_MODEL_CACHE_DIR": str(args.model_cache),
           "MAGPIE_SFTP_ENABLED": "false", "MAGPIE_IMAGE_MIN_SIDE": "16",
           "MAGPIE_AUTO_PROJECTION": "false"}
    auto = {**env, "MAGPIE_AUTO_PROJECTION": "true",
            "MAGPIE_AUTO_PROJECTION_MIN_ITEMS": str(min(1000, len(items))),
            "MAGPIE_AUTO_PROJECTION_CHECK_S": str(args.check_s)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="magpie-quality-server-") as tmp, serve_files(files) as base:
        data = Path(tmp) / "data"
        server = start_server(data, env, timeout=120)
        try:
            app = new_application(server.url, "Emoji")
            auth = (app["access_key"], app["secret_key"])
            started = time.monotonic()
            for i in range(0, len(items), 100):
                form = {}
                for j, it in enumerate(items[i:i + 100]):
                    form[f"im_name[{j}]"] = names[it.code]
                    form[f"im_url[{j}]"] = f"{base}/{names[it.code]}.png"
                trans = httpx.post(f"{server.url}/insert", data=form, auth=auth).json()["trans_id"]
                done = wait_transaction(server.url, auth, trans, timeout=600)
                assert done["fail_count"] == 0, done
            print(f"{len(items)} items indexed in {time.monotonic() - started:.0f} s", file=sys.stderr)
            rows.append(("raw model + upload views",
                         {name: recall(server.url, auth, queries) for name, queries in sets.items()}))
        finally:
            stop_server(server)
        server = start_server(data, auto, timeout=120)
        try:
            started, deadline = time.monotonic(), time.monotonic() + 1800
            while (moved := MOVED.search(server.log())) is None:
                if time.monotonic() > deadline:
                    raise SystemExit("no projection was fitted in 30 min")
                time.sleep(1)
            print(f"fitted and moved in {time.monotonic() - started:.0f} s", file=sys.stderr)
            rows.append((f"+ automatic projection ({moved.group(2)}-d, {moved.group(1)} items)",
                         {name: recall(server.url, auth, queries) for name, queries in sets.items()}))
        finally:
            stop_server(server)
    print(f"n={len(items)} emoji per set, through POST /uploadsearch of a running server")
    print(f"{'':48}{'tw->fb R@1/R@10':>18}{'photo R@1/R@10':>18}")
    for label, res in rows:
        print(f"{label:48}" + "".join(f"{r[0]:>11.3f}{r[1]:>7.3f}" for r in (res["tw->fb"], res["photo"])))


if __name__ == "__main__":
    main()
