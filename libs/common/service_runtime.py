"""What a distributed service's composition root yields: a `Service` (its bus, readiness
checks, and what its internal API serves). Light on purpose: every `bootstrap` imports it;
the HTTP side lives in magpie.common.service_http.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magpie.common.ports import Bus

Check = Callable[[], Awaitable[bool]]


@dataclass
class Service:
    """One running service: its bus, its readiness checks and what its internal API serves."""

    name: str
    bus: Bus | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    index: Any = None  # the search service's VectorIndex (magpie.search.http_api)
    analytics: Any = None  # the analytics service's AnalyticsStore (magpie.analytics.http_api)
    ready: bool = False

    async def check(self) -> dict[str, str]:
        """Readiness of each dependency: 'ok' or why not."""
        result = {"service": "ok" if self.ready else "starting"}
        if self.bus is not None:
            result["bus"] = "ok" if getattr(self.bus, "running", True) and self.ready else "starting"
        for name, probe in self.checks.items():
            try:
                result[name] = "ok" if await probe() else "unavailable"
            except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
                result[name] = f"error: {exc.__class__.__name__}"
        return result
