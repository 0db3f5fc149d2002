"""Typed results. Each keeps the decoded answer in `raw`, for fields the SDK does not model."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

FieldType = Literal["string", "text", "int", "float"]


class SearchOptions(TypedDict, total=False):
    """Parameters every search method takes (the server's README, Search)."""

    page: int
    limit: int
    fl: list[str]
    get_all_fl: bool
    fq: dict[str, str] | list[str]
    score: bool
    score_min: float
    score_max: float
    qinfo: bool
    facets: list[str] | str
    facets_limit: int
    facets_show_count: bool
    dedup: bool
    dedup_score_threshold: float


@dataclass(frozen=True)
class ItemError:
    """One item the server refused or could not index: its position in the call (`index`,
    when known), `im_name`, the API's `code` and `message`."""

    code: int
    message: str
    im_name: str | None = None
    index: int | None = None

    @classmethod
    def from_wire(cls, e: dict[str, Any]) -> ItemError:
        """From `{error_code, error_message, im_name?, index?}`."""
        return cls(code=int(e.get("error_code", 0)), message=str(e.get("error_message", "")),
                   im_name=e.get("im_name"), index=e.get("index"))


@dataclass(frozen=True)
class InsertResult:
    """What `/insert` (or `/remove`) answered: the transaction to follow and the items refused
    at once (codes 102-109)."""

    status: str
    total: int
    trans_id: int | None
    errors: list[ItemError]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> InsertResult:
        """From the Data API's batch answer."""
        trans = body.get("trans_id")
        return cls(status=body.get("status", ""), total=int(body.get("total", 0)),
                   trans_id=int(trans) if trans is not None else None,
                   errors=[ItemError.from_wire(e) for e in body.get("error", [])], raw=body)


@dataclass(frozen=True)
class TransactionStatus:
    """Progress of a transaction; `done` once `processed_percent` reaches 100."""

    trans_id: int
    processed_percent: int
    total: int
    success_count: int
    fail_count: int
    start_time: str
    update_time: str
    errors: list[ItemError]
    error_page: int
    error_limit: int
    raw: dict[str, Any] = field(repr=False)

    @property
    def done(self) -> bool:
        """Every item has its final status."""
        return self.processed_percent >= 100

    @property
    def processed(self) -> int:
        """Items with a final status (indexed or failed)."""
        return self.success_count + self.fail_count

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> TransactionStatus:
        """From `/insert/status` or `/v1/transactions/{id}`."""
        r = body["result"][0]
        return cls(trans_id=int(r["trans_id"]), processed_percent=int(r["processed_percent"]),
                   total=int(r["total"]), success_count=int(r["success_count"]),
                   fail_count=int(r["fail_count"]), start_time=r.get("start_time", ""),
                   update_time=r.get("update_time", ""),
                   errors=[ItemError.from_wire(e) for e in r.get("error_list", [])],
                   error_page=int(r.get("error_page", 1)), error_limit=int(r.get("error_limit", 10)),
                   raw=body)


@dataclass(frozen=True)
class Hit:
    """One search result: `im_name`, `score` (when asked for) and the `fl` fields as strings."""

    im_name: str
    score: float | None
    value_map: dict[str, str]


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int | None


@dataclass(frozen=True)
class Facet:
    """Counts per value (string fields) or the `range` (min, max) of a numeric field."""

    key: str
    values: list[FacetValue]
    range: tuple[float, float] | None

    @classmethod
    def from_wire(cls, f: dict[str, Any]) -> Facet:
        """From one entry of the answer's `facets`."""
        rng = f.get("range")
        return cls(key=f["key"], values=[FacetValue(str(i.get("value")), i.get("count"))
                                         for i in f.get("items", [])],
                   range=(rng["min"], rng["max"]) if rng else None)


@dataclass(frozen=True)
class SearchResult:
    """A search answer: the hits of this `page`, `total` (how many paging reaches), `facets`,
    `qinfo` (the query item's fields), `im_id` (upload search: page on without uploading again)
    and `reqid` (send it as `query_id` when tracking what the shopper does with the results)."""

    method: str
    page: int
    limit: int
    total: int
    hits: list[Hit]
    facets: list[Facet]
    qinfo: dict[str, Any] | None
    im_id: str | None
    reqid: str | None
    raw: dict[str, Any] = field(repr=False)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def im_names(self) -> list[str]:
        """The hits' im_names, best first."""
        return [h.im_name for h in self.hits]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> SearchResult:
        """From a search envelope."""
        return cls(method=body.get("method", ""), page=int(body.get("page", 1)),
                   limit=int(body.get("limit", 0)), total=int(body.get("total", 0)),
                   hits=[Hit(r["im_name"], r.get("score"), r.get("value_map", {}))
                         for r in body.get("result", [])],
                   facets=[Facet.from_wire(f) for f in body.get("facets", [])],
                   qinfo=body.get("qinfo"), im_id=body.get("im_id"), reqid=body.get("reqid"),
                   raw=body)


@dataclass(frozen=True)
class TrackResult:
    """A batch of events: ids of those accepted (by position) and the refused ones."""

    status: str
    reqid: str | None
    accepted: dict[int, str]
    errors: list[ItemError]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> TrackResult:
        """From `POST /v3/events`."""
        return cls(status=body.get("status", ""), reqid=body.get("reqid"),
                   accepted={int(r["index"]): r["event_id"] for r in body.get("result", [])},
                   errors=[ItemError.from_wire(e) for e in body.get("error", [])], raw=body)


@dataclass(frozen=True)
class Field:
    """A schema field."""

    name: str
    type: FieldType
    searchable: bool = False

    def to_wire(self) -> dict[str, Any]:
        """As the admin API takes it."""
        return {"name": self.name, "type": self.type, "searchable": self.searchable}


@dataclass(frozen=True)
class Schema:
    app_id: str
    version: int
    fields: list[Field]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Schema:
        """From SchemaOut."""
        return cls(app_id=body["app_id"], version=int(body["version"]),
                   fields=[Field(f["name"], f["type"], bool(f["searchable"])) for f in body["fields"]])


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class App:
    """An application (one catalog). `access_key`, `secret_key` and `app_key` are set only in
    the answer that created it; the secret is never shown again."""

    app_id: str
    name: str
    image_type: str
    schema_version: int
    created_at: datetime | None
    access_key: str | None = None
    secret_key: str | None = None
    app_key: str | None = None

    @classmethod
    def from_wire(cls, b: dict[str, Any]) -> App:
        """From AppOut or AppCreated."""
        return cls(app_id=b["app_id"], name=b["name"], image_type=b["image_type"],
                   schema_version=int(b.get("schema_version", 0)), created_at=_dt(b.get("created_at")),
                   access_key=b.get("access_key"), secret_key=b.get("secret_key"),
                   app_key=b.get("app_key"))


@dataclass(frozen=True)
class Key:
    """A key set: `access_key` + `secret_key` (full access, shown once) and the search-only
    `app_key` (safe in web pages)."""

    access_key: str
    app_key: str
    label: str
    created_at: datetime | None
    revoked_at: datetime | None
    secret_key: str | None = None

    @classmethod
    def from_wire(cls, b: dict[str, Any]) -> Key:
        """From KeyOut or KeyCreated."""
        return cls(access_key=b["access_key"], app_key=b["app_key"], label=b.get("label", ""),
                   created_at=_dt(b.get("created_at")), revoked_at=_dt(b.get("revoked_at")),
                   secret_key=b.get("secret_key"))


@dataclass(frozen=True)
class AppInfo:
    """What `GET /v1/app` says about a key: its application, scope (full or search), size."""

    app_id: str
    name: str
    image_type: str
    scope: str
    item_count: int

    @classmethod
    def from_wire(cls, b: dict[str, Any]) -> AppInfo:
        """From AppInfo."""
        return cls(app_id=b["app_id"], name=b["name"], image_type=b["image_type"],
                   scope=b["scope"], item_count=int(b["item_count"]))


@dataclass
class BulkResult:
    """A bulk upload: items sent, indexed and failed, every per-item error, the transactions."""

    sent: int = 0
    success_count: int = 0
    fail_count: int = 0
    errors: list[ItemError] = field(default_factory=list)
    trans_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every item was indexed."""
        return self.fail_count == 0 and self.success_count == self.sent
