"""The Python heap of a long-running service: start-up objects out of the collector's way,
and collection pauses measured.

A full (generation 2) collection walks every tracked object. After start-up a server holds
hundreds of thousands of them that live as long as the process (modules, routes, the ORM's
mappers, pydantic schemas, model metadata); measured on the standalone server during an
ingest, each full collection then stopped every thread for 125-142 ms, a search caught
behind one waiting that long. `freeze_startup_heap` moves them into the permanent generation
once the service is up, so later collections walk only what was allocated since.
"""
from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram


def freeze_startup_heap() -> int:
    """Collect once, then freeze every surviving object; how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """A histogram of garbage-collection pauses per generation, fed by `gc.callbacks`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.histogram = Histogram(
            "magpie_gc_pause_seconds", "Garbage-collection pauses (every thread waits)",
            ["generation"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5))
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector with the GIL held: nothing here may allocate much.
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            pause = time.perf_counter() - self._started
            self.histogram.labels(str(info["generation"])).observe(pause)

    def install(self) -> None:
        """Start observing (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop observing (idempotent)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
