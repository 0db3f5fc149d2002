"""The one SQL of the analytics store: DDL, inserts and queries, identical for chdb and a
ClickHouse server (the adapters differ only in transport).

Layout, for billions of rows:
- MergeTree family, PARTITION BY toYYYYMM(date), ORDER BY (app_id, date, action|method|stage,
  ...): every report reads one application's days, and only the granules of those days.
- LowCardinality(String) for the dimensions (action, method, currency, source, ...).
- Dedup: ReplacingMergeTree whose sorting key ends with the row's identity (event_id, reqid),
  read with FINAL. Duplicates share a partition (date is in both keys), so FINAL merges
  within partitions only, and background merges keep shrinking what FINAL has to do.
  FINAL (not uniqExact/argMax) because it also makes sums (revenue, results served) exact,
  and it is the faster of the two: bench/analytics.py, one app's month of 333k events with
  2% delivered twice, chdb on 2 shared cores: daily funnel 26 ms with FINAL, 41 ms with
  uniqExact(event_id), 17 ms without dedup (and wrong); 14 ms with FINAL once merged.
  Over one application's 10M events (30 days, loaded day by day as a server receives them,
  merges settled) the whole report takes ~0.5 s, ~0.65 s for one solution; right after a
  bulk re-delivery of 2% of the month as one part overlapping all others, 0.75-1.2 s.

Values travel as ClickHouse query parameters (`{name:Type}`), never spliced into the text;
the only text substitution is the database name, checked against an identifier pattern.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.ports.analytics import ExportFormat, IngestLogRow

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FUNNEL_ACTIONS = ("product_view", "product_click", "add_to_cart", "transaction")

EVENT_COLUMNS = (
    "app_id", "action", "event_id", "ts", "query_id", "pid", "pos", "uid", "sid", "value",
    "currency", "price", "from_req_id", "source", "placement", "cat", "name", "label", "brand",
    "product_url", "im_url", "trans_id", "campaign", "ad_group", "creative",
    "s1", "s2", "s3", "s4", "s5", "n1", "n2", "n3", "n4", "n5", "custom_json", "context", "received_at",
)
SEARCH_COLUMNS = ("app_id", "method", "solution", "reqid", "ts", "uid", "sid", "result_count",
                  "first_pos", "im_names", "received_at")
INGEST_COLUMNS = ("app_id", "stage", "outcome", "trans_id", "im_name", "error_code", "ts")

DDL = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    """CREATE TABLE IF NOT EXISTS {db}.events
(
    app_id      LowCardinality(String),
    date        Date DEFAULT toDate(ts),
    action      LowCardinality(String),
    event_id    String,
    ts          DateTime64(3, 'UTC'),
    query_id    String,
    pid         String,
    pos         UInt32,
    uid         String,
    sid         String,
    value       Nullable(Float64),
    currency    LowCardinality(String),
    price       Nullable(Float64),
    from_req_id String,
    source      LowCardinality(String),
    placement   LowCardinality(String),
    cat         LowCardinality(String),
    name        String,
    label       LowCardinality(String),
    brand       LowCardinality(String),
    product_url String,
    im_url      String,
    trans_id    String,
    campaign    LowCardinality(String),
    ad_group    LowCardinality(String),
    creative    LowCardinality(String),
    s1 String, s2 String, s3 String, s4 String, s5 String,
    n1 Nullable(Float64), n2 Nullable(Float64), n3 Nullable(Float64), n4 Nullable(Float64),
    n5 Nullable(Float64),
    custom_json String,
    context     Map(LowCardinality(String), String),
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (app_id, date, action, event_id)""",
    """CREATE TABLE IF NOT EXISTS {db}.searches
(
    app_id       LowCardinality(String),
    date         Date DEFAULT toDate(ts),
    method       LowCardinality(String),
    solution     LowCardinality(String),
    reqid        String,
    ts           DateTime64(3, 'UTC'),
    uid          String,
    sid          String,
    result_count UInt32,
    first_pos    UInt32,
    im_names     Array(String),
    received_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (app_id, date, method, reqid)""",
    """CREATE TABLE IF NOT EXISTS {db}.ingest_log
(
    app_id     LowCardinality(String),
    date       Date DEFAULT toDate(ts),
    stage      LowCardinality(String),
    outcome    LowCardinality(String),
    trans_id   String,
    im_name    String,
    error_code UInt16,
    ts         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (app_id, date, stage, outcome, trans_id, im_name, error_code, ts)""",
    # Counts of API calls, flushed by the gateway every few seconds: summed, not deduplicated.
    """CREATE TABLE IF NOT EXISTS {db}.api_calls
(
    app_id   LowCardinality(String),
    date     Date,
    endpoint LowCardinality(String),
    n        UInt64
)
ENGINE = SummingMergeTree(n)
PARTITION BY toYYYYMM(date)
ORDER BY (app_id, date, endpoint)""",
)

_RANGE = "app_id = {app_id:String} AND date BETWEEN {date_from:Date} AND {date_to:Date}"
# An event belongs to a solution when the search it follows (queryId) was served by that
# method or widget. Searches of the day before count: a click may come after midnight.
# The `!= ''` guard keeps ClickHouse from building the set when no solution is asked.
# Query ids are compared (and counted distinct, in EVENT_FUNNEL) by their 64-bit cityHash:
# a set of integers is built and probed ~1.5x faster than one of strings (bench/analytics.py,
# 10M events), and the odds of two ids of one report colliding are ~n²/2^65 (1e-7 for 2M
# searches): exact in practice.
_EVENT_SOLUTION = """({solution:String} = '' OR cityHash64(query_id) IN (
        SELECT cityHash64(reqid) FROM {db}.searches
        WHERE app_id = {app_id:String} AND {solution:String} != ''
          AND date BETWEEN {date_from:Date} - 1 AND {date_to:Date}
          AND (method = {solution:String} OR solution = {solution:String})))"""
_SEARCH_SOLUTION = "({solution:String} = '' OR method = {solution:String} OR solution = {solution:String})"
_FUNNEL_IN = "(" + ", ".join(f"'{a}'" for a in FUNNEL_ACTIONS) + ")"

EVENT_FUNNEL = f"""SELECT
    date,
    countIf(action = 'product_view') AS views,
    countIf(action = 'product_click') AS clicks,
    uniqExactIf(cityHash64(query_id), action = 'product_click') AS clicked_searches,
    countIf(action = 'add_to_cart') AS add_to_carts,
    uniqExactIf(cityHash64(query_id), action = 'add_to_cart') AS carted_searches,
    countIf(action = 'transaction') AS transactions,
    uniqExactIf(cityHash64(query_id), action = 'transaction') AS converted_searches,
    countIf(action = 'product_click' AND pos > 0) AS ranked_clicks,
    sumIf(pos, action = 'product_click' AND pos > 0) AS ranked_pos_sum
FROM {{db}}.events FINAL
WHERE {_RANGE} AND action IN {_FUNNEL_IN}
  AND {_EVENT_SOLUTION}
GROUP BY ROLLUP(date)
ORDER BY date"""

SEARCH_VOLUME = f"""SELECT date, count() AS searches, sum(result_count) AS results_served
FROM {{db}}.searches FINAL
WHERE {_RANGE} AND {_SEARCH_SOLUTION}
GROUP BY ROLLUP(date)
ORDER BY date"""

REVENUE = f"""SELECT currency, count() AS transactions, round(sum(value), 4) AS revenue
FROM {{db}}.events FINAL
WHERE {_RANGE} AND action = 'transaction' AND {_EVENT_SOLUTION}
GROUP BY currency
ORDER BY revenue DESC, currency"""

CLICK_HISTOGRAM = f"""SELECT least(pos, {{max_pos:UInt32}} + 1) AS pos, count() AS clicks
FROM {{db}}.events FINAL
WHERE {_RANGE} AND action = 'product_click' AND pos > 0 AND {_EVENT_SOLUTION}
GROUP BY pos
ORDER BY pos"""

TOP_PRODUCTS = f"""SELECT pid, count() AS clicks, round(avgIf(pos, pos > 0), 2) AS avg_pos
FROM {{db}}.events FINAL
WHERE {_RANGE} AND action = 'product_click' AND {_EVENT_SOLUTION}
GROUP BY pid
ORDER BY clicks DESC, pid
LIMIT {{limit:UInt32}}"""

USAGE = f"""SELECT date, 'search' AS kind, toString(method) AS name, count() AS n
FROM {{db}}.searches FINAL WHERE {_RANGE} GROUP BY date, name
UNION ALL
SELECT date, 'event' AS kind, toString(action) AS name, count() AS n
FROM {{db}}.events FINAL WHERE {_RANGE} GROUP BY date, name
UNION ALL
SELECT date, 'ingest' AS kind, concat(stage, ':', outcome) AS name, count() AS n
FROM {{db}}.ingest_log FINAL WHERE {_RANGE} GROUP BY date, name
UNION ALL
SELECT date, 'api' AS kind, toString(endpoint) AS name, sum(n) AS n
FROM {{db}}.api_calls WHERE {_RANGE} GROUP BY date, name
ORDER BY date, kind, name"""

EXPORT_EVENTS = f"""SELECT {", ".join(c for c in EVENT_COLUMNS if c != "app_id")}
FROM {{db}}.events FINAL
WHERE {_RANGE}
ORDER BY ts, event_id"""

DELETE_APP = tuple(f"ALTER TABLE {{db}}.{t} DELETE WHERE app_id = {{app_id:String}}"
                   for t in ("events", "searches", "ingest_log", "api_calls"))
PING = "SELECT 1 FORMAT JSON"
_EXPORT_FORMATS = {"csv": "CSVWithNames", "parquet": "Parquet"}
# Why each setting: 64-bit counts as JSON numbers, not strings; the ROLLUP total row has
# date = null (not 1970-01-01). ROLLUP rather than WITH TOTALS: ClickHouse 26.9 writes
# broken JSON for WITH TOTALS over an empty result.
_JSON = ("\nSETTINGS output_format_json_quote_64bit_integers = 0, group_by_use_nulls = 1"
         "\nFORMAT JSON")


def render(template: str, db: str) -> str:
    """The statement with its database name filled in (the only text substitution)."""
    if not _IDENT.match(db):
        raise ValueError(f"invalid analytics database name {db!r}")
    return template.replace("{db}", db)


def select(template: str, db: str) -> str:
    """A query that answers one JSON document (meta, data, totals)."""
    return render(template, db) + _JSON


def export(db: str, fmt: ExportFormat) -> str:
    """The raw-events export query in CSV-with-header or Parquet."""
    return render(EXPORT_EVENTS, db) + f"\nFORMAT {_EXPORT_FORMATS[fmt]}"


def insert(table: str, columns: Iterable[str], db: str) -> str:
    """The INSERT statement whose data (JSONEachRow) travels separately."""
    return render(f"INSERT INTO {{db}}.{table} ({', '.join(columns)}) FORMAT JSONEachRow", db)


# Rows carry times as JSON numbers of seconds with 3 decimals (1718000000.123): ClickHouse reads
# them into DateTime64(3) exactly, and Python writes them ~20x faster than date text. Rows are
# built from the models' attributes (no model_dump): the write path runs once per event. An
# event row leaves out its empty fields ("" and null, most of the 38 columns): the INSERT fills
# them with the column defaults, which are the same values, and the rows are 2-3x smaller.
_EVENT_COPY = tuple(c for c in EVENT_COLUMNS if c not in ("ts", "pos", "received_at"))
_SEARCH_COPY = tuple(c for c in SEARCH_COLUMNS if c not in ("ts", "received_at"))


def event_row(e: EventTracked) -> dict[str, Any]:
    """The events-table row of a tracked event (empty fields left out)."""
    d = e.__dict__
    row = {c: v for c in _EVENT_COPY if (v := d[c]) is not None and v != ""}
    row["ts"], row["pos"] = d["ts"] / 1000, d["pos"] or 0
    row["received_at"] = _seconds(d["occurred_at"])
    return row


def search_row(s: SearchServed) -> dict[str, Any]:
    """The searches-table row of a served search."""
    d = s.__dict__
    row = {c: d[c] for c in _SEARCH_COPY}
    row["ts"], row["received_at"] = d["ts"] / 1000, _seconds(d["occurred_at"])
    return row


def ingest_row(r: IngestLogRow) -> dict[str, Any]:
    """The ingest_log row of an item outcome."""
    return {"app_id": r.app_id, "stage": r.stage, "outcome": r.outcome, "trans_id": str(r.trans_id),
            "im_name": r.im_name, "error_code": r.error_code, "ts": r.ts / 1000}


API_CALL_COLUMNS = ("app_id", "date", "endpoint", "n")


def api_call_row(app_id: str, day: str, endpoint: str, n: int) -> dict[str, Any]:
    """The api_calls row of `n` calls of one endpoint on one day (ISO date)."""
    return {"app_id": app_id, "date": day, "endpoint": endpoint, "n": n}


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One row as compact JSON (pydantic-core's serializer: several times json.dumps' speed).
    The write buffer keeps these bytes, not the dicts: bytes are invisible to Python's garbage
    collector, and a buffer of dicts alive for a second made every full collection of a busy
    server longer and more frequent."""
    return to_json(row)


def encode(rows: Sequence[bytes]) -> bytes:
    """JSONEachRow data for encoded rows, as one JSON array of the row objects (a form
    JSONEachRow also reads)."""
    return b"[" + b",".join(rows) + b"]"


def _seconds(value: datetime) -> float:
    return round(value.timestamp(), 3)
