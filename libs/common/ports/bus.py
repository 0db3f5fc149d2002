"""The message bus port."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from magpie.common.events.base import Event

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]


class Bus(Protocol):
    """Publishes events and delivers them to subscribed handlers, at least once.

    Handlers are plain async functions of one event (deps bound by the composition root).
    A handler that raises a retryable `MagpieError` (or any unexpected exception) is retried
    with backoff; after the last try, or at once for a non-retryable `MagpieError`, the event
    goes to the dead letters of that subscription with the reason.
    """

    def subscribe(self, event_type: type[E], group: str, handler: Handler[E]) -> None:
        """Deliver every `event_type` event to `handler`, shared among members of `group`."""

    async def start(self) -> None:
        """Connect and begin delivering; subscriptions made before this take effect."""

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Send `event` on its topic, keyed by `key` (default `event.key()`); waits when full."""

    async def stop(self) -> None:
        """Stop delivering; finish or persist what is in flight, then disconnect."""
