"""Storage shapes of the ingestion service: transactions, their items, the catalog's items.

The tables are the durable work log: an item stays `pending` until its final status
arrives, so a crash at any stage is repaired by replaying pending items on start.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from magpie.common.controlplane.tables import UTCDateTime, utcnow


class IngestBase(DeclarativeBase):
    """Declarative base of the ingestion tables."""


class Transaction(IngestBase):
    __tablename__ = "ingest_transactions"

    trans_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    app_id: Mapped[str] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(16))  # api, csv, sftp
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TxItem(IngestBase):
    __tablename__ = "ingest_tx_items"
    __table_args__ = (Index("ix_tx_items_pending", "state", "trans_id"),)

    trans_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    im_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    app_id: Mapped[str] = mapped_column(String(32))
    op: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8), default="pending")  # pending, ok, failed
    im_url: Mapped[str | None] = mapped_column(String(5000), nullable=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)


class CatalogItem(IngestBase):
    """An item the catalog holds or is about to hold (accepted, maybe not indexed yet)."""

    __tablename__ = "ingest_items"

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    im_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_trans_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
