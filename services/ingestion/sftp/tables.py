"""Storage shapes of the SFTP datafeed: accounts, their public keys, and feeds (own metadata)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from magpie.common.controlplane.tables import UTCDateTime, utcnow


class SftpBase(DeclarativeBase):
    """Declarative base of the SFTP tables."""


class SftpAccount(SftpBase):
    """One SFTP login per application; only a hash of the password is kept."""

    __tablename__ = "sftp_accounts"

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SftpKey(SftpBase):
    """An SSH public key that may log in as the application's account."""

    __tablename__ = "sftp_keys"
    __table_args__ = (UniqueConstraint("app_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(32), index=True)
    fingerprint: Mapped[str] = mapped_column(String(128))  # SHA256:...
    algorithm: Mapped[str] = mapped_column(String(64))
    key_data: Mapped[str] = mapped_column(String(8192))  # "ssh-ed25519 AAAA..." without comment
    comment: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Feed(SftpBase):
    """One uploaded feed file: where it is, how far its processing got, and its outcome."""

    __tablename__ = "sftp_feeds"

    feed_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32), index=True)
    mode: Mapped[str] = mapped_column(String(12))  # FULL, INCREMENT, DELETE ('' when rejected)
    filename: Mapped[str] = mapped_column(String(255))  # as uploaded
    state: Mapped[str] = mapped_column(String(16))
    trans_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    path: Mapped[str] = mapped_column(String(600))  # relative to the application's folder
    result_path: Mapped[str | None] = mapped_column(String(600), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)  # rows recorded: resume skips them
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ignored: Mapped[list[str]] = mapped_column(JSON, default=list)  # columns no schema field takes
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    force: Mapped[bool] = mapped_column(Boolean, default=False)  # skip the FULL safety guard
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


async def create_tables(engine: AsyncEngine) -> None:
    """Create the SFTP tables that do not exist yet."""
    async with engine.begin() as conn:
        await conn.run_sync(SftpBase.metadata.create_all)
