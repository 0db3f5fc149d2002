"""Progress reporting for long offline jobs (reindex, colour backfill): the job reports, the
CLI draws bars, tests and libraries pass nothing."""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where progress goes (the CLI draws bars); every method may be a no-op."""

    def phase(self, name: str, total: int) -> None:
        """A phase of `total` points starts."""

    def advance(self, n: int) -> None:
        """`n` more points of the current phase are done."""


class Quiet:
    """Progress that goes nowhere."""

    def phase(self, name: str, total: int) -> None:
        """Ignored."""

    def advance(self, n: int) -> None:
        """Ignored."""
