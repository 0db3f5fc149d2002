"""Transactional outbox: record events with the change, publish them afterwards."""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from magpie.common.controlplane.tables import OutboxEvent
from magpie.common.events import Event, event_type_for
from magpie.common.ports import Bus

log = logging.getLogger(__name__)


def add_event(session: AsyncSession, event: Event) -> None:
    """Queue `event` in the current transaction; it is published only if that commits."""
    session.add(OutboxEvent(topic=event.topic, payload=event.model_dump(mode="json")))


async def relay_once(sessionmaker: async_sessionmaker, bus: Bus, batch: int = 100) -> int:
    """Publish and delete up to `batch` pending events, oldest first; returns how many."""
    async with sessionmaker() as session, session.begin():
        query = select(OutboxEvent).order_by(OutboxEvent.id).limit(batch)
        if session.bind.dialect.name == "postgresql":
            # Several gateway replicas may relay at once: each takes rows no other holds.
            query = query.with_for_update(skip_locked=True)
        rows = (await session.scalars(query)).all()
        for row in rows:
            await bus.publish(event_type_for(row.topic).model_validate(row.payload))
        if rows:
            await session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_([r.id for r in rows])))
        return len(rows)


async def run_relay(
    sessionmaker: async_sessionmaker, bus: Bus, stop: asyncio.Event, interval_s: float = 0.5
) -> None:
    """Relay until `stop` is set; a failing round is logged and retried on the next tick."""
    while not stop.is_set():
        try:
            while await relay_once(sessionmaker, bus):
                pass
        except Exception:  # noqa: BLE001 - the relay must outlive a bus or database hiccup
            log.exception("outbox relay round failed; retrying")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
