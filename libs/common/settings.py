"""Settings for every Magpie service, read from `MAGPIE_*` environment variables."""
from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BusKind(StrEnum):
    INPROCESS = "inprocess"
    KAFKA = "kafka"


class ObjectStoreKind(StrEnum):
    LOCAL = "local"
    S3 = "s3"


class IndexKind(StrEnum):
    EDGE = "edge"
    QDRANT = "qdrant"


class AnalyticsKind(StrEnum):
    CHDB = "chdb"
    CLICKHOUSE = "clickhouse"


class Settings(BaseSettings):
    """All configuration; standalone defaults need none of it set."""

    model_config = SettingsConfigDict(env_prefix="MAGPIE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    log_json: bool = False
    # Freeze the heap once started (see magpie.common.heap): full collections then skip it.
    gc_freeze: bool = True

    # Which adapter serves each port.
    bus: BusKind = BusKind.INPROCESS
    object_store: ObjectStoreKind = ObjectStoreKind.LOCAL
    index: IndexKind = IndexKind.EDGE
    analytics: AnalyticsKind = AnalyticsKind.CHDB
    # Empty means SQLite under data_dir; a postgresql+psycopg:// URL selects PostgreSQL.
    database_url: str = ""

    # In-process bus.
    # Workers per subscription: image downloads and embedding batches need many items in
    # flight at once, and an idle asyncio worker costs next to nothing.
    bus_queue_size: int = Field(256, ge=1)
    bus_workers: int = Field(32, ge=1)
    bus_max_retries: int = Field(3, ge=0)
    bus_retry_backoff_s: float = Field(0.2, ge=0)
    bus_shutdown_timeout_s: float = Field(10.0, ge=0)

    # Kafka.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(6, ge=1)
    kafka_topic_prefix: str = "magpie."
    # Records one consumer takes per poll and handles concurrently (one key stays in order):
    # the embedding batcher needs many images in flight to fill its batches.
    kafka_max_batch: int = Field(64, ge=1)
    # Also how long a dead member holds its partitions before the group moves them on.
    kafka_session_timeout_ms: int = Field(10_000, ge=100)
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=50)

    # Distributed mode (`magpie run SERVICE`): each service's own HTTP port (health, readiness,
    # metrics and, for search and analytics, their internal API), and where the gateway finds
    # search and analytics. `distributed` is set by `magpie run`; `magpie serve` leaves it off.
    distributed: bool = False
    ingestion_port: int = Field(8081, ge=1, le=65535)
    image_fetch_port: int = Field(8082, ge=1, le=65535)
    embedding_port: int = Field(8083, ge=1, le=65535)
    search_port: int = Field(8084, ge=1, le=65535)
    analytics_port: int = Field(8085, ge=1, le=65535)
    sftp_health_port: int = Field(8086, ge=1, le=65535)
    search_url: str = "http://127.0.0.1:8084"
    analytics_url: str = "http://127.0.0.1:8085"
    # `service`: the distributed gateway asks the analytics service (which may own chdb);
    # `direct`: it reads the ClickHouse server itself (needs MAGPIE_ANALYTICS=clickhouse).
    gateway_analytics: Literal["service", "direct"] = "service"
    internal_timeout_s: float = Field(10.0, gt=0)
    # When set, the internal APIs of search and analytics want `Authorization: Bearer <it>`.
    internal_token: SecretStr | None = None

    # S3 / MinIO.
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "minioadmin"
    s3_secret_key: SecretStr = SecretStr("minioadmin")
    s3_bucket: str = "magpie"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    # Engines of the later services.
    qdrant_url: str = "http://127.0.0.1:6333"
    clickhouse_url: str = "http://127.0.0.1:8123"

    # Control plane bootstrap: the first owner.
    admin_email: str = "owner@localhost"
    admin_password: SecretStr | None = None
    session_ttl_s: int = Field(12 * 3600, ge=60)

    # Image download and checks.
    allow_private_image_urls: bool = False
    image_fetch_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    image_fetch_connect_timeout_s: float = Field(5.0, gt=0)
    image_fetch_read_timeout_s: float = Field(15.0, gt=0)
    image_fetch_total_timeout_s: float = Field(30.0, gt=0)
    image_fetch_max_redirects: int = Field(5, ge=0)
    image_fetch_retries: int = Field(2, ge=0)
    image_fetch_backoff_s: float = Field(0.5, ge=0)
    image_fetch_global_concurrency: int = Field(64, ge=1)
    image_fetch_per_host_concurrency: int = Field(8, ge=1)
    image_min_side: int = Field(32, ge=1)
    # CPU-heavy ingest threads (decoding, the model): "idle" runs them under SCHED_IDLE and
    # nice 10 (only the CPU nobody else wants: searches never wait for them, but a search load
    # that fills every core holds an ingest back); "low", nice 10 only (ingest keeps about a
    # tenth of a core a serving thread wants). See magpie.common.pipeline.
    ingest_priority: Literal["idle", "low"] = "idle"
    # Upload search of a photo (no uniform border) also searches 9 crops of it, each item at
    # its best view (magpie.search.views): better recall for shoppers' photos, about 3x the
    # latency of one view. False: the whole picture only.
    upload_search_views: bool = True
    # Each application's catalog projection (learned whitening: better recall for photos and
    # other vendors' pictures, see the README) fitted by the standalone server on its own once
    # the catalog has `auto_projection_min_items` items and is at rest (no new item for one
    # check interval), refitted at twice the size of the last fit; the index moves over
    # online. Off: `magpie projection fit` by hand.
    auto_projection: bool = True
    auto_projection_min_items: int = Field(1000, ge=200)
    auto_projection_check_s: float = Field(60.0, gt=0)

    # Embedding: the default model, optional per-image-type overrides (a model name, or
    # `st:<sentence-transformers model or folder>`), batching.
    embedding_model: str = "efficientnet-lite0"
    # Where exported models are cached; default `<data_dir>/models`.
    model_cache_dir: Path | None = None
    embedding_models: dict[str, str] = {}
    embedding_batch_size: int = Field(32, ge=1)
    # onnxruntime intra-op threads per image model (None: every core).
    embedding_threads: int | None = Field(None, ge=1)
    embedding_batch_wait_s: float = Field(0.02, ge=0)

    # SFTP datafeed server (in-process in standalone mode); empty host means `host`.
    sftp_enabled: bool = True
    sftp_host: str = ""
    sftp_port: int = Field(2222, ge=1, le=65535)
    # Where merchants connect, when it differs from where the server listens (a container
    # listening on 0.0.0.0 behind a published port). Empty/unset: the listen address.
    sftp_public_host: str = ""
    sftp_public_port: int | None = Field(None, ge=1, le=65535)
    # Generated on first start; default `<data_dir>/sftp_host_ed25519_key`.
    sftp_host_key: Path | None = None
    # A FULL feed that would remove more than this share of a catalog of at least
    # `sftp_guard_min_items` items is refused (an empty, truncated or garbled file).
    sftp_guard_min_items: int = Field(100, ge=0)
    sftp_guard_max_remove: float = Field(0.5, ge=0, le=1)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    def sftp_address(self, seen_as: str | None = None) -> tuple[str, int]:
        """The SFTP host and port merchants connect to; a wildcard listen address becomes
        `seen_as` (the host name the caller reached us by) when given."""
        host = self.sftp_public_host or self.sftp_host or self.host
        if not self.sftp_public_host and host in ("", "0.0.0.0", "::", "[::]") and seen_as:
            host = seen_as
        return host, self.sftp_public_port or self.sftp_port

    @property
    def ingest_idle(self) -> bool:
        """Whether ingest threads run under SCHED_IDLE (`ingest_priority` "idle")."""
        return self.ingest_priority == "idle"

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the control-plane store."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'control.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
