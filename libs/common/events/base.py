"""The base of every bus event."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """An immutable, versioned message; `topic` names where it travels."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]
    event_id: str = Field(default_factory=lambda: uuid4().hex)
    occurred_at: datetime = Field(default_factory=_now)
    app_id: str

    def key(self) -> str:
        """The partition key: events of one key stay in order."""
        return self.app_id
