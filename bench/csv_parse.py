"""Throughput and memory of the CSV feed parser (magpie.ingestion.csv_feed).

    python bench/csv_parse.py [--mb 100] [--gzip] [--keep PATH]

Writes a catalog CSV of about `--mb` MB to disk (streamed; quoted fields with commas, quotes
and embedded newlines in a share of rows), then parses it in a fresh child process (so peak
RSS is the parser's alone) and prints rows/s, MB/s and peak RSS next to the file size: a
parser with bounded memory keeps peak RSS flat whatever the size. `--gzip` also times the
`.csv.gz` variant the SFTP feed reads.
"""
from __future__ import annotations

import argparse
import gzip
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = "im_name,im_url,brand,category,price,stock,title,description\n"
BRANDS = ["Nike", "Puma", "Adidas", "Acme", "Zara", "Uniqlo"]
CATEGORIES = ["top", "bottom", "outerwear", "shoes", "bag", "hat"]


def generate(path: Path, mb: int) -> int:
    """Stream about `mb` MB of rows to `path`; returns the row count."""
    target, rows = mb * 1024 * 1024, 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        while f.tell() < target:
            lines = []
            for i in range(rows, rows + 10_000):
                desc = (f'"Soft cotton, ""{BRANDS[i % 6]}"" fit.\nMachine washable; size {i % 50}."'
                        if i % 10 == 0 else f"Plain description number {i} with a few words in it")
                lines.append(f"item-{i},https://cdn.example.com/img/{i}.jpg,{BRANDS[i % 6]},"
                             f"{CATEGORIES[i % 6]},{i % 997}.{i % 100:02d},{i % 300},"
                             f"Product title {i} é,{desc}\n")
            f.write("".join(lines))
            rows += 10_000
    return rows


def parse(path: Path, gz: bool) -> None:
    """Child process: parse `path` and print its figures."""
    from itertools import islice

    from magpie.ingestion.csv_feed import SAMPLE_ROWS, infer_schema, open_feed

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with open(path, "rb") as f:
        feed = open_feed(f, gzip=gz)
        fields = infer_schema(islice(iter(feed), SAMPLE_ROWS), feed.header)
    with open(path, "rb") as f:
        rows = errors = 0
        for row in open_feed(f, gzip=gz):
            rows += 1
            errors += row.error is not None
    seconds = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'gzip' if gz else 'csv '}  {size:8.1f} MB on disk  {rows:>9,} rows  {errors} errors  "
          f"{seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s  {size / seconds:6.1f} MB/s  "
          f"peak RSS {peak:6.1f} MiB (after imports {rss0 / 1024:.1f} MiB)")
    print("      inferred:", ", ".join(f"{f.name}:{f.type}{'*' if f.searchable else ''}" for f in fields))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--keep", type=Path, help="write the CSV here and keep it")
    ap.add_argument("--parse", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--gz", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parse:
        return parse(args.parse, args.gz)
    folder = Path(tempfile.mkdtemp(prefix="magpie-csv-bench-"))
    path = args.keep or folder / "feed.csv"
    try:
        start = time.perf_counter()
        rows = generate(path, args.mb)
        print(f"generated {rows:,} rows in {time.perf_counter() - start:.1f} s: {path}")
        runs = [(path, False)]
        if args.gzip:
            gz_path = folder / "feed.csv.gz"
            with open(path, "rb") as src, gzip.open(gz_path, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            runs.append((gz_path, True))
        for target, gz in runs:
            cmd = [sys.executable, __file__, "--parse", str(target)] + (["--gz"] if gz else [])
            subprocess.run(cmd, check=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
