"""The analytics store against the real ClickHouse engine (chdb), and proof that the server
adapter sends the very same SQL (it cannot run here: no ClickHouse server)."""
import io
import json
from datetime import UTC, date, datetime

import pytest

from magpie.analytics import reports
from magpie.analytics.handlers import on_item_status
from magpie.analytics.store import sql
from magpie.analytics.store.chdb_store import ChdbAnalyticsStore
from magpie.analytics.store.clickhouse_store import ClickHouseAnalyticsStore
from magpie.common.events.analytics import EventTracked, SearchServed
from magpie.common.events.ingest import ItemStatus
from magpie.common.ports.analytics import IngestLogRow, ReportQuery

pytestmark = pytest.mark.integration
DAY1, DAY2 = 1_718_000_000_000, 1_718_000_000_000 + 86_400_000  # 2024-06-10, 2024-06-11 (UTC)
JUNE = (date(2024, 6, 1), date(2024, 6, 30))


@pytest.fixture
async def store(tmp_path):
    # chdb binds one folder per process; each test closes its store, so the next may use another.
    s = ChdbAnalyticsStore(tmp_path / "analytics", database="t_store")
    await s.start()
    yield s
    await s.stop()


def _ev(action, ts=DAY1, **kw):
    return EventTracked(app_id=kw.pop("app_id", "shop"), action=action, ts=ts, event_id=kw.pop("id"), **kw)


def _scenario():
    searches = [SearchServed(app_id="shop", reqid="q1", method="search", result_count=10, ts=DAY1),
                SearchServed(app_id="shop", reqid="q2", method="search", solution="more-like-this",
                             result_count=5, ts=DAY1),
                SearchServed(app_id="shop", reqid="q3", method="uploadsearch", result_count=20, ts=DAY2)]
    events = [
        _ev("product_view", id="v1", query_id="q1", pid="a", pos=1),
        _ev("product_click", id="c1", query_id="q1", pid="a", pos=1),
        _ev("product_click", id="c2", query_id="q1", pid="b", pos=4),
        _ev("product_click", id="c3", query_id="q2", pid="a", pos=25),
        _ev("add_to_cart", id="a1", query_id="q1", pid="a"),
        _ev("transaction", id="t1", query_id="q1", value=30.0, currency="SGD"),
        _ev("transaction", id="t2", ts=DAY2, query_id="q3", value=12.5, currency="USD"),
        _ev("product_click", id="c4", ts=DAY2, query_id="q3", pid="b", pos=2),
        _ev("product_click", id="other", query_id="x", pid="z", pos=1, app_id="other-shop"),
    ]
    return searches, events


async def test_report_counts_each_event_once_and_computes_the_formulas(store):
    searches, events = _scenario()
    await store.insert_searches(searches + searches[:1])
    await store.insert_events(events)
    await store.flush()
    await store.insert_events(events[:6])  # a retried delivery: same event ids
    r = await reports.report(store, ReportQuery("shop", *JUNE), top=5)
    t = r["totals"]
    assert (t["searches"], t["results_served"], t["views"], t["clicks"]) == (3, 35, 1, 4)
    assert (t["add_to_carts"], t["transactions"], t["clicked_searches"]) == (1, 2, 3)
    assert (t["ctr"], t["add_to_cart_rate"], t["conversion_rate"]) == (1.0, 0.3333, 0.6667)
    assert r["click_rank"] == 8.0  # (1 + 4 + 25 + 2) / 4
    assert [d["date"] for d in r["by_day"]] == ["2024-06-10", "2024-06-11"]
    assert r["by_day"][0]["clicks"] == 3 and r["by_day"][0]["ctr"] == 1.0
    assert r["revenue"] == [{"currency": "SGD", "transactions": 1, "revenue": 30.0},
                            {"currency": "USD", "transactions": 1, "revenue": 12.5}]
    hist = {h["pos"]: h["clicks"] for h in r["click_histogram"]}
    assert (hist["1"], hist["2"], hist["4"], hist["21+"]) == (1, 1, 1, 1)
    assert r["top_products"][:2] == [{"pid": "a", "clicks": 2, "avg_pos": 13.0},
                                     {"pid": "b", "clicks": 2, "avg_pos": 3.0}]


async def test_a_solution_keeps_its_searches_and_the_events_that_follow_them(store):
    searches, events = _scenario()
    await store.insert_searches(searches)
    await store.insert_events(events)
    widget = await reports.report(store, ReportQuery("shop", *JUNE, solution="more-like-this"))
    assert (widget["totals"]["searches"], widget["totals"]["clicks"], widget["click_rank"]) == (1, 1, 25.0)
    upload = await reports.report(store, ReportQuery("shop", *JUNE, solution="uploadsearch"))
    assert upload["totals"]["conversion_rate"] == 1.0 and upload["revenue"][0]["currency"] == "USD"
    odd = "tab\there 'quoted' back\\slash"  # parameters, not text: nothing to inject or break
    await store.insert_searches([SearchServed(app_id="shop", reqid="q9", method=odd, result_count=1,
                                              ts=DAY1)])
    assert (await reports.report(store, ReportQuery("shop", *JUNE, solution=odd)))["totals"]["searches"] == 1
    empty = await reports.report(store, ReportQuery("shop", date(2023, 1, 1), date(2023, 1, 31)))
    assert empty["totals"]["searches"] == 0 and empty["totals"]["ctr"] is None and empty["by_day"] == []


async def test_exports_stream_deduplicated_csv_and_parquet(store):
    import pyarrow.parquet as pq

    _, events = _scenario()
    await store.insert_events(events + events)
    csv = b"".join([c async for c in store.export_events("shop", *JUNE, "csv")]).decode().splitlines()
    assert csv[0].split(",")[:3] == ['"action"', '"event_id"', '"ts"'] and len(csv) == 1 + 8
    parquet = b"".join([c async for c in store.export_events("shop", *JUNE, "parquet")])
    table = pq.read_table(io.BytesIO(parquet))
    assert table.num_rows == 8 and sorted(table.column("event_id").to_pylist())[0] == "a1"


async def test_an_export_over_many_blocks_is_one_document(store):
    # chdb formats each block on its own: several inserts (parts) and FINAL give several blocks,
    # which came out as repeated CSV headers and a run of Parquet files before.
    import pyarrow.parquet as pq

    _, events = _scenario()
    for event in events:  # one part per event
        await store.insert_events([event])
        await store.flush()
    unique = 8  # as test_exports_stream_deduplicated_csv_and_parquet: the scenario's events in June
    csv = b"".join([c async for c in store.export_events("shop", *JUNE, "csv")]).decode().splitlines()
    assert len(csv) == 1 + unique and sum(line.startswith('"action"') for line in csv) == 1
    parquet = b"".join([c async for c in store.export_events("shop", *JUNE, "parquet")])
    table = pq.read_table(io.BytesIO(parquet))
    assert table.num_rows == unique and parquet.count(b"PAR1") == 2  # one file: magic at both ends


async def test_usage_counts_and_application_deletion(store):
    searches, events = _scenario()
    await store.insert_searches(searches)
    await store.insert_events(events)
    await store.insert_ingest_log([IngestLogRow("shop", "42", "im1", "search", "ok", 0, DAY1),
                                   IngestLogRow("shop", "42", "im2", "image-fetch", "failed", 201, DAY1)] * 2)
    status = ItemStatus(app_id="shop", trans_id=42, im_name="im3", op="upsert", stage="embedding", ok=False,
                        error_code=203, occurred_at=datetime(2024, 6, 10, tzinfo=UTC))
    for _ in range(2):  # a re-delivered message counts once
        await on_item_status(status, store)
    u = await reports.usage(store, "shop", *JUNE)
    assert u["totals"]["searches"] == {"search": 2, "uploadsearch": 1}
    assert u["totals"]["events"]["product_click"] == 4
    assert u["totals"]["ingest"] == {"embedding:failed": 1, "image-fetch:failed": 1, "search:ok": 1}
    await store.delete_app("shop")
    assert (await reports.usage(store, "shop", *JUNE))["by_day"] == []
    assert (await store.usage("other-shop", *JUNE))[0]["n"] == 1


class _FakeChdbSession:
    def __init__(self, sent):
        self.sent = sent

    def query(self, text, fmt="CSV", params=None):
        self.sent.append((text, params or {}))
        return _Bytes(b'{"data": []}')

    def send_query(self, text, fmt="CSV", params=None):
        self.sent.append((text, params or {}))
        return _Chunks(_document(text))

    def close(self):
        pass


class _Bytes:
    def __init__(self, data):
        self.data = data

    def bytes(self):
        return self.data


def _document(query: str) -> bytes:
    """What a fake engine answers an export: a one-row Parquet file, or CSV text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not query.endswith("FORMAT Parquet"):
        return b'"x"\n1\n'
    out = io.BytesIO()
    pq.write_table(pa.table({"x": [1]}), out)
    return out.getvalue()


class _Chunks:
    def __init__(self, document: bytes):
        self.left = [_Bytes(document)]

    def fetch(self):
        return self.left.pop() if self.left else None

    def close(self):
        pass


class _FakeClickHouseClient:
    def __init__(self, sent):
        self.sent = sent

    def command(self, cmd, parameters=None, data=None):
        # Normalised to chdb's form, where the rows follow the INSERT statement.
        self.sent.append((cmd + "\n" + data.decode() if data else cmd, parameters or {}))

    def raw_query(self, query, parameters=None):
        self.sent.append((query, parameters or {}))
        return b'{"data": []}'

    def raw_stream(self, query, parameters=None):
        self.sent.append((query, parameters or {}))
        return iter([_document(query)])

    def close(self):
        pass


async def _drive(store, searches, events):
    await store.start()
    await store.insert_events(events)
    await store.insert_searches(searches)
    await store.insert_ingest_log([IngestLogRow("shop", "1", "im", "search", "ok", 0, DAY1)])
    await reports.report(store, ReportQuery("shop", *JUNE, solution="more-like-this"))
    await reports.usage(store, "shop", *JUNE)
    import pyarrow.parquet as pq

    assert b"".join([c async for c in store.export_events("shop", *JUNE, "csv")]) == b'"x"\n1\n'
    parquet = b"".join([c async for c in store.export_events("shop", *JUNE, "parquet")])
    assert pq.read_table(io.BytesIO(parquet)).to_pylist() == [{"x": 1}]
    await store.delete_app("shop")
    await store.ping()
    await store.stop()


async def test_both_adapters_send_the_very_same_sql(tmp_path, monkeypatch):
    via_chdb, via_server = [], []
    chdb = ChdbAnalyticsStore(tmp_path / "unused", database="magpie")
    monkeypatch.setattr(chdb, "_connect", lambda: _FakeChdbSession(via_chdb))
    server = ClickHouseAnalyticsStore("http://clickhouse:8123", database="magpie")
    monkeypatch.setattr(server, "_connect", lambda: _FakeClickHouseClient(via_server))
    searches, events = _scenario()  # the same objects: received_at is part of the rows
    await _drive(chdb, searches, events)
    await _drive(server, searches, events)
    assert via_chdb == via_server and len(via_chdb) > 15
    texts = [t for t, _ in via_chdb]
    ddl = len(sql.DDL)
    assert texts[:ddl] == [sql.render(d, "magpie") for d in sql.DDL]
    assert sum(t.startswith("INSERT INTO magpie.events (app_id, action") for t in texts) == 1
    assert all("{db}" not in t for t in texts)
    # Values travel as parameters, never in the text.
    assert any(p.get("solution") == "more-like-this" for _, p in via_chdb)
    assert "more-like-this" not in " ".join(t for t in texts if not t.startswith("INSERT"))
    rows = json.loads(texts[ddl].split("\n", 1)[1])  # JSONEachRow data as one array of rows
    assert {r["event_id"] for r in rows} == {e.event_id for e in events}


class _FlakyStore(ChdbAnalyticsStore):
    fail = True

    async def _insert(self, statement, body):
        if self.fail:
            raise ConnectionError("down")
        await super()._insert(statement, body)


async def test_the_buffer_flushes_by_size_and_keeps_rows_when_an_insert_fails(tmp_path):
    s = _FlakyStore(tmp_path / "analytics", database="t_flaky", flush_rows=3, max_buffer_rows=4)
    await s.start()
    try:
        _, events = _scenario()
        await s.insert_events(events[:2])
        assert s.buffered() == 2
        with pytest.raises(ConnectionError):
            await s.insert_events(events[2:3])  # reaches flush_rows: flushes, and fails
        assert s.buffered() == 3
        s.flush_rows = 100
        await s.insert_events(events[3:5])  # over max_buffer_rows after the next failure
        with pytest.raises(ConnectionError):
            await s.flush()
        assert s.buffered() == 4
        s.fail = False
        await s.flush()
        totals = (await s.event_funnel(ReportQuery("shop", *JUNE))).totals
        assert s.buffered() == 0 and totals["clicks"] + totals["views"] == 3  # oldest row dropped
    finally:
        s.fail = False
        await s.stop()
