"""Profiling helper shared by the benchmarks."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def py_spy(pid: int, out: Path | None, extra: list[str], rate: int = 100) -> Iterator[None]:
    """Record `pid` with py-spy (raw stacks in `out`) for the duration of the block; `extra`
    py-spy options, e.g. --gil (only the thread holding the GIL) or --threads."""
    if out is None:
        yield
        return
    # The venv's bin is often not on PATH when a bench runs as `.venv/bin/python bench/...`.
    beside = Path(sys.executable).with_name("py-spy")
    exe = (os.environ.get("PY_SPY") or shutil.which("py-spy")
           or (str(beside) if beside.exists() else "py-spy"))
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                             "--output", str(out), "--nonblocking", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attach before the work starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"py-spy: {out} ({proc.returncode})", file=sys.stderr)
