"""The distributed bus: Kafka through FastStream's KafkaBroker, at-least-once.

One FastStream batch subscriber (one aiokafka consumer) per subscription, in consumer group
`group`. Each poll returns up to `max_batch` records; records of one key (one item) are
handled in order, records of different keys concurrently, so the embedding batcher sees whole
batches and downloads overlap. The consumer commits only once every record of the poll was
handled or went to the dead-letter topic `<prefix><topic>.<group>.dlq`; a consumer that dies
before committing leaves the records to the next member of the group.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.schemas import Topic
from pydantic import ValidationError

from magpie.common.bus.inprocess import deliver_with_retries
from magpie.common.errors import Unavailable
from magpie.common.events.base import Event

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import LogicSubscriber

    from magpie.common.ports.bus import Handler
    from magpie.common.settings import Settings

log = logging.getLogger(__name__)

TYPE_HEADER = "magpie-event-type"
VERSION_HEADER = "magpie-event-version"
REASON_HEADER = "magpie-dlq-reason"
SOURCE_HEADER = "magpie-dlq-source"
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS


class KafkaBus:
    """The `Bus` port over Kafka: keyed JSON records, consumer groups, commit after success."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "magpie.",
        partitions: int = 6,
        max_retries: int = 3,
        retry_backoff_s: float = 0.2,
        client_id: str = "magpie",
        replication_factor: int = 1,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        graceful_timeout_s: float = 15.0,
        max_batch: int = 64,
        batch_timeout_ms: int = 100,
    ) -> None:
        self._bootstrap = bootstrap
        self._prefix = topic_prefix
        self._partitions = partitions
        self._replication = replication_factor
        self._max_retries = max_retries
        self._backoff = retry_backoff_s
        self._client_id = client_id
        self._max_batch = max_batch
        self._batch_timeout_ms = batch_timeout_ms
        # Records handled and dead-lettered per (event topic, group): for /metrics.
        self.handled: Counter[tuple[str, str]] = Counter()
        self.dead_lettered: Counter[tuple[str, str]] = Counter()
        # The session timeout is also how long a dead member holds its partitions, and how
        # long a joining member waits for the group to settle: tests want it short.
        self._consumer_options = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
        }
        self._broker = KafkaBroker(
            bootstrap, client_id=client_id, graceful_timeout=graceful_timeout_s,
            logger=log, log_level=logging.DEBUG,  # one line per record is debug, not info
        )
        self._subs: list[tuple[str, str, LogicSubscriber[Any]]] = []
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()
        self._running = False

    @classmethod
    def from_settings(cls, settings: Settings, client_id: str = "magpie") -> KafkaBus:
        """A bus configured from the `kafka_*` and `bus_*` retry settings."""
        return cls(
            settings.kafka_bootstrap, topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions, max_retries=settings.bus_max_retries,
            retry_backoff_s=settings.bus_retry_backoff_s, client_id=client_id,
            graceful_timeout_s=settings.bus_shutdown_timeout_s,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            max_batch=settings.kafka_max_batch,
        )

    @property
    def running(self) -> bool:
        """Whether the bus has started and not stopped."""
        return self._running

    def topic_name(self, topic: str) -> str:
        """The Kafka topic that carries the event topic `topic`."""
        return self._prefix + topic

    def dead_letter_topic(self, topic: str, group: str) -> str:
        """Where `group` puts the `topic` events it gave up on."""
        return f"{self._prefix}{topic}.{group}.dlq"

    # --- the port -----------------------------------------------------------------------
    def subscribe(self, event_type: type[Event], group: str, handler: Handler[Any]) -> None:
        """Consume `event_type` in consumer group `group`; each call adds one group member."""
        if self._running:
            raise RuntimeError("KafkaBus.subscribe must be called before start()")
        topic = self.topic_name(event_type.topic)
        # declare=False: FastStream only creates the topics it subscribes to, and this bus also
        # needs publish-only and dead-letter topics, so start() creates them all, one way
        # (aiokafka's admin client directly), with the configured partition count.
        subscriber = self._broker.subscriber(
            Topic(topic, declare=False), group_id=group,
            batch=True, max_records=self._max_batch, batch_timeout_ms=self._batch_timeout_ms,
            # A group's first start must still see what was published before it existed.
            auto_offset_reset="earliest",
            # On an exception the poll's records are sought back and tried again, never
            # committed. The consumer below catches handler failures itself, so this only
            # happens when a dead-letter publish fails.
            ack_policy=AckPolicy.NACK_ON_ERROR, **self._consumer_options,
        )
        subscriber(self._consumer(event_type, group, handler))
        self._subs.append((event_type.topic, group, subscriber))

    async def start(self) -> None:
        """Create missing topics, connect the producer, then start every consumer."""
        if self._running:
            return
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-admin"
        )
        try:
            await self._admin.start()
            names = [self.topic_name(t) for t, _, _ in self._subs]
            names += [self.dead_letter_topic(t, g) for t, g, _ in self._subs]
            await self._ensure_topics(names)
            await self._broker.connect()
            # Running before the consumers start: their handlers may publish right away.
            self._running = True
            await self._broker.start()
        except BaseException:
            self._running = True  # so that stop() releases whatever did start
            with contextlib.suppress(Exception):  # the first error is the one to report
                await self.stop()
            raise

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Send `event` keyed by `key` (default `event.key()`), once the broker has it."""
        if not self._running:
            raise Unavailable("the Kafka bus is not running")
        topic = self.topic_name(event.topic)
        try:
            await self._ensure_topics([topic])
            await self._broker.publish(
                event.model_dump_json().encode(), topic,
                key=(key if key is not None else event.key()).encode(),
                headers={
                    "content-type": "application/json",
                    TYPE_HEADER: event.topic,
                    VERSION_HEADER: str(getattr(event, "version", "")),
                },
            )
        except KafkaError as exc:
            # The one typed error for "try again later": callers need not know about Kafka.
            raise Unavailable(f"Kafka did not take the event: {exc}") from exc

    async def stop(self) -> None:
        """Let in-flight handlers finish (up to the graceful timeout), leave the groups, close."""
        if not self._running:
            return
        try:
            # FastStream stops the subscribers first (waiting for their handlers, which may
            # still publish), then the producer.
            await self._broker.stop()
        finally:
            self._running = False
            if self._admin is not None:
                await self._admin.close()
                self._admin = None

    def assigned_partitions(self) -> dict[tuple[str, str], set[int]]:
        """Partitions each subscription holds now, by (event topic, group): for readiness."""
        held: dict[tuple[str, str], set[int]] = {}
        for topic, group, subscriber in self._subs:
            consumer = subscriber.consumer
            parts = {tp.partition for tp in consumer.assignment()} if consumer else set()
            held.setdefault((topic, group), set()).update(parts)
        return held

    # --- consuming ----------------------------------------------------------------------
    def _consumer(self, event_type: type[Event], group: str, handler: Handler[Any]):
        dlq = self.dead_letter_topic(event_type.topic, group)
        where = f"{event_type.topic}/{group}"
        counter_key = (event_type.topic, group)

        async def one(record: Any) -> None:
            try:
                event = event_type.model_validate_json(record.value or b"")
            except ValidationError as exc:
                await self._dead_letter(dlq, record, f"undecodable {event_type.__name__}: {exc}")
                self.dead_lettered[counter_key] += 1
                self.handled[counter_key] += 1
                return
            reason = await deliver_with_retries(
                handler, event, max_retries=self._max_retries, backoff_s=self._backoff,
                where=where,
            )
            if reason is not None:
                await self._dead_letter(dlq, record, reason)
                self.dead_lettered[counter_key] += 1
            self.handled[counter_key] += 1

        async def in_order(records: list[Any]) -> None:
            for record in records:
                await one(record)

        async def consume(message: KafkaMessage) -> None:
            # Returning means "done": FastStream then commits the whole poll, so the commit
            # never passes a record that is not done.
            records = message.raw_message
            if not isinstance(records, tuple):
                records = (records,)
            chains: dict[tuple[int, bytes | None], list[Any]] = defaultdict(list)
            for record in records:  # one key stays on one partition, in offset order
                chains[(record.partition, record.key)].append(record)
            outcomes = await asyncio.gather(*(in_order(c) for c in chains.values()),
                                            return_exceptions=True)
            for outcome in outcomes:  # every chain has finished: now fail the poll if one did
                if isinstance(outcome, BaseException):
                    raise outcome

        consume.__name__ = f"consume_{event_type.topic}_{group}".replace(".", "_")
        return consume

    async def _dead_letter(self, dlq: str, record: Any, reason: str) -> None:
        # The original headers travel on (type, version, correlation id), plus why and whence.
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        headers[REASON_HEADER] = reason[:2000]  # headers travel with every fetch: keep it short
        headers[SOURCE_HEADER] = f"{record.topic}/{record.partition}/{record.offset}"
        await self._broker.publish(record.value, dlq, key=record.key, headers=headers)
        log.error("dead letter %s -> %s: %s", headers[SOURCE_HEADER], dlq, reason)

    # --- topics -------------------------------------------------------------------------
    async def _ensure_topics(self, names: list[str]) -> None:
        """Create the topics this process has not seen yet, with `partitions` partitions."""
        missing = [n for n in dict.fromkeys(names) if n not in self._known_topics]
        if not missing:
            return
        async with self._topics_lock:
            missing = [n for n in missing if n not in self._known_topics]
            if not missing or self._admin is None:
                return
            response = await self._admin.create_topics(
                [NewTopic(n, self._partitions, self._replication) for n in missing]
            )
            for name, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise Unavailable(f"cannot create Kafka topic {name}: error {code} {rest}")
                self._known_topics.add(name)
