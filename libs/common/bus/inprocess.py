"""The standalone bus: an asyncio dispatcher with bounded queues, retries and a shutdown spool."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from magpie.common.errors import MagpieError, Unavailable
from magpie.common.events.base import Event
from magpie.common.events.registry import event_type_for

if TYPE_CHECKING:
    from magpie.common.ports.bus import Handler
    from magpie.common.settings import Settings

log = logging.getLogger(__name__)

SPOOL_FILE = "inprocess-bus.jsonl"
# The longest pause between two tries: exponential backoff must not stall a worker for minutes.
MAX_BACKOFF_S = 30.0


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def _shard(key: str, n: int) -> int:
    # crc32, not hash(): str hashes are salted per process, and the spool must map a key to
    # the same worker (hence the same order) after a restart.
    return zlib.crc32(key.encode()) % n


class DeadLetter(NamedTuple):
    """An event a subscription gave up on, and why."""

    topic: str
    group: str
    event: Event
    reason: str


@dataclass
class _Pending:
    """One delivery owed to one subscription."""

    group: str
    key: str
    event: Event


@dataclass
class _Subscription:
    """One (topic, group): its handlers, one queue and one worker task per shard."""

    event_type: type[Event]
    group: str
    workers: int
    queue_size: int
    handlers: list[Handler[Any]] = field(default_factory=list)
    queues: list[asyncio.Queue[_Pending]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    inflight: list[_Pending | None] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.event_type.topic

    def reset(self) -> None:
        # Queues are made per start: an asyncio.Queue binds to the loop that first uses it.
        self.queues = [asyncio.Queue(self.queue_size) for _ in range(self.workers)]
        self.inflight = [None] * self.workers
        self.tasks = []

    def handler_for(self, key: str) -> Handler[Any]:
        # Members of a group share its events like consumers share partitions: by key, so one
        # key always reaches the same handler, in order.
        return self.handlers[_shard(key, len(self.handlers))]


async def deliver_with_retries(
    handler: Handler[Any], event: Event, *, max_retries: int, backoff_s: float, where: str
) -> str | None:
    """Run `handler` on `event` with the retry policy; None on success, else the dead-letter reason.

    Shared by both bus adapters so they retry the same way: a retryable `MagpieError` or any
    unexpected exception is tried again after `backoff_s * 2**n`; a non-retryable
    `MagpieError` is not, since the same input would fail the same way.
    """
    tries = max_retries + 1
    for attempt in range(1, tries + 1):
        try:
            await handler(event)
            return None
        except MagpieError as exc:
            if not exc.retryable:
                return f"{type(exc).__name__}: {exc}"
            error: Exception = exc
        except Exception as exc:
            error = exc
        if attempt < tries:
            delay = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            log.warning("handler failed on %s (try %d of %d), retrying in %.2fs: %r",
                        where, attempt, tries, delay, error)
            await asyncio.sleep(delay)
    return f"{type(error).__name__}: {error} (after {tries} tries)"


class InProcessBus:
    """The `Bus` port inside one process: per-subscription bounded queues and worker tasks.

    Each (topic, group) gets `workers` queues of `queue_size` events; an event goes to the
    queue of its key's shard, so one key is handled in order. `publish` waits while that
    queue is full. `stop` drains within `shutdown_timeout_s`; what is left is written to
    `spool_dir` and delivered again by the next `start`.
    """

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        workers: int = 4,
        max_retries: int = 3,
        retry_backoff_s: float = 0.2,
        shutdown_timeout_s: float = 10.0,
        spool_dir: Path | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1 or max_retries < 0:
            raise ValueError("queue_size and workers must be >= 1, max_retries >= 0")
        self._queue_size = queue_size
        self._workers = workers
        self._max_retries = max_retries
        self._backoff = retry_backoff_s
        self._shutdown_timeout = shutdown_timeout_s
        self._spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._subs: dict[tuple[str, str], _Subscription] = {}
        self._state = _State.NEW
        self._late: list[_Pending] = []
        self.dead_letters: list[DeadLetter] = []

    @classmethod
    def from_settings(cls, settings: Settings, spool_dir: Path | None = None) -> InProcessBus:
        """A bus configured from the `bus_*` settings; spools under `spool_dir` if given."""
        return cls(
            queue_size=settings.bus_queue_size,
            workers=settings.bus_workers,
            max_retries=settings.bus_max_retries,
            retry_backoff_s=settings.bus_retry_backoff_s,
            shutdown_timeout_s=settings.bus_shutdown_timeout_s,
            spool_dir=spool_dir,
        )

    @property
    def spool_path(self) -> Path | None:
        """Where `stop` persists undelivered events, if anywhere."""
        return self._spool_dir / SPOOL_FILE if self._spool_dir is not None else None

    # --- the port -----------------------------------------------------------------------
    def subscribe(self, event_type: type[Event], group: str, handler: Handler[Any]) -> None:
        """Deliver every `event_type` event to `handler`, shared among members of `group`."""
        sub = self._subs.get((event_type.topic, group))
        if sub is None:
            sub = _Subscription(event_type, group, self._workers, self._queue_size)
            self._subs[(event_type.topic, group)] = sub
            if self._state is _State.RUNNING:
                self._start_workers(sub)
        sub.handlers.append(handler)

    async def start(self) -> None:
        """Start the workers, then re-enqueue what the last `stop` spooled."""
        if self._state is _State.RUNNING:
            return
        for sub in self._subs.values():
            self._start_workers(sub)
        self._state = _State.RUNNING
        await self._restore_spool()

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Queue `event` for every group subscribed to its topic; waits while a queue is full."""
        key = key if key is not None else event.key()
        if self._state not in (_State.RUNNING, _State.STOPPING):
            raise Unavailable("the in-process bus is not running")
        for sub in [s for s in self._subs.values() if s.topic == event.topic]:
            pending = _Pending(sub.group, key, event)
            if self._state is _State.RUNNING:
                await sub.queues[_shard(key, sub.workers)].put(pending)
            else:
                # Stopping: handlers still draining may publish follow-ups, and a publisher
                # may have been waiting on a full queue. Keep their events for the spool
                # rather than fail them or start new work.
                self._late.append(pending)

    async def stop(self) -> None:
        """Refuse new events, drain within the timeout, spool the rest, stop the workers."""
        if self._state is not _State.RUNNING:
            return
        self._state = _State.STOPPING
        queues = [q for sub in self._subs.values() for q in sub.queues]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in queues)), self._shutdown_timeout
            )
        except TimeoutError:
            log.warning("bus drain timed out after %.1fs", self._shutdown_timeout)
        leftovers = await self._halt_workers()
        leftovers.extend(self._late)
        self._late.clear()
        self._state = _State.STOPPED
        if leftovers:
            self._persist(leftovers)

    # --- delivery -----------------------------------------------------------------------
    def _start_workers(self, sub: _Subscription) -> None:
        sub.reset()
        sub.tasks = [
            asyncio.create_task(self._work(sub, i), name=f"bus:{sub.topic}:{sub.group}:{i}")
            for i in range(sub.workers)
        ]

    async def _work(self, sub: _Subscription, index: int) -> None:
        queue = sub.queues[index]
        while True:
            pending = await queue.get()
            sub.inflight[index] = pending
            try:
                await self._deliver(sub, pending)
            finally:
                sub.inflight[index] = None
                queue.task_done()

    async def _deliver(self, sub: _Subscription, pending: _Pending) -> None:
        reason = await deliver_with_retries(
            sub.handler_for(pending.key), pending.event, max_retries=self._max_retries,
            backoff_s=self._backoff, where=f"{sub.topic}/{sub.group}",
        )
        if reason is not None:
            self._dead_letter(sub, pending.event, reason)

    def _dead_letter(self, sub: _Subscription, event: Event, reason: str) -> None:
        self.dead_letters.append(DeadLetter(sub.topic, sub.group, event, reason))
        log.error(
            "dead letter on %s/%s, event %s: %s", sub.topic, sub.group, event.event_id, reason
        )

    async def _halt_workers(self) -> list[_Pending]:
        """Cancel the workers; return what they held, then what was queued (key order kept)."""
        subs = list(self._subs.values())
        # Read the in-flight events before cancelling: a worker clears its slot as it unwinds.
        # An interrupted event is delivered again later (handlers are idempotent).
        leftovers = [p for sub in subs for p in sub.inflight if p is not None]
        tasks = [task for sub in subs for task in sub.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queues = [q for sub in subs for q in sub.queues]
        while True:
            # Emptying a full queue wakes publishers blocked on it, and they put once more:
            # let them run, and go again until nothing new arrives.
            await asyncio.sleep(0)
            batch = [q.get_nowait() for q in queues for _ in range(q.qsize())]
            if not batch:
                break
            leftovers.extend(batch)
        for sub in subs:
            sub.tasks = []
        return leftovers

    # --- spool --------------------------------------------------------------------------
    def _persist(self, leftovers: list[_Pending]) -> None:
        path = self.spool_path
        if path is None:
            for p in leftovers:
                self._dead_letter(self._sub_for(p), p.event, "undelivered at shutdown, no spool")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep an older spool's lines first (a start that never ran), then write atomically so
        # a crash mid-write never leaves a half-written spool behind.
        previous = path.read_text() if path.exists() else ""
        lines = [
            json.dumps({
                "topic": p.event.topic, "group": p.group, "key": p.key,
                "event": p.event.model_dump_json(),
            })
            for p in leftovers
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(previous + "".join(line + "\n" for line in lines))
        os.replace(tmp, path)
        log.warning("spooled %d undelivered events to %s", len(lines), path)

    def _sub_for(self, pending: _Pending) -> _Subscription:
        return self._subs[(pending.event.topic, pending.group)]

    async def _restore_spool(self) -> None:
        path = self.spool_path
        if path is None or not path.exists():
            return
        restored = 0
        for pending in self._read_spool(path.read_text().splitlines()):
            sub = self._subs.get((pending.event.topic, pending.group))
            if sub is None:
                log.error("spooled event for unknown subscription %s/%s dropped to dead letters",
                          pending.event.topic, pending.group)
                self.dead_letters.append(DeadLetter(
                    pending.event.topic, pending.group, pending.event,
                    "spooled for a subscription that no longer exists",
                ))
                continue
            await sub.queues[_shard(pending.key, sub.workers)].put(pending)
            restored += 1
        path.unlink()
        log.info("re-enqueued %d spooled events from %s", restored, path)

    def _read_spool(self, lines: Iterable[str]) -> Iterable[_Pending]:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                sub = self._subs.get((record["topic"], record["group"]))
                # The subscribed type decodes best (it may be a type outside the registry).
                event_type = sub.event_type if sub else event_type_for(record["topic"])
                event = event_type.model_validate_json(record["event"])
            except Exception:
                self._reject_line(line)
                continue
            yield _Pending(record["group"], record["key"], event)

    def _reject_line(self, line: str) -> None:
        # An unreadable line is set aside, not dropped: it may be recovered by hand.
        assert self.spool_path is not None
        rejected = self.spool_path.with_suffix(".rejected")
        with rejected.open("a") as out:
            out.write(line + "\n")
        log.exception("unreadable spool line moved to %s", rejected)
