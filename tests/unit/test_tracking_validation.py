"""Tracking input validation (reference §5) and the report formulas: pure functions."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magpie.analytics import reports
from magpie.analytics.store import sql
from magpie.analytics.tracking import (
    CONTEXT_FIELDS,
    NUMBER_FIELDS,
    STRING_FIELDS,
    from_legacy_pixel,
    validate_batch,
    validate_event,
    validate_item,
)

pytestmark = pytest.mark.unit
NOW = 1_718_000_000_000


def _check(**raw):
    return validate_event(raw, app_id="app1", now_ms=NOW)


def _reasons(**raw):
    event, errors = _check(**raw)
    assert event is None
    return " | ".join(e.detail for e in errors)


def test_a_valid_click_keeps_every_field_and_types_them():
    event, errors = _check(action="product_click", queryId="q1", pid="sku-1", pos="3", uid="u",
                           sid="s", ts=str(NOW - 5), c="spring", n1="2.5", os="ios", junk="ignored")
    assert errors == [] and event is not None
    assert (event.app_id, event.query_id, event.pid, event.pos) == ("app1", "q1", "sku-1", 3)
    assert event.ts == NOW - 5
    assert event.campaign == "spring" and event.n1 == 2.5 and event.context == {"os": "ios"}


@pytest.mark.parametrize("action", ["product_click", "product_view", "add_to_cart", "add_to_wishlist"])
def test_product_events_need_query_id_and_pid(action):
    reasons = _reasons(action=action)
    assert f"queryId is required for {action}" in reasons and f"pid is required for {action}" in reasons


def test_search_and_transaction_need_query_id_and_transaction_a_value():
    assert "queryId is required for search" in _reasons(action="search")
    reasons = _reasons(action="transaction", currency="USD")
    assert "queryId is required" in reasons and "value is required for transaction" in reasons
    event, _ = _check(action="transaction", queryId="q", value="19.90", currency="sgd")
    assert event.value == 19.9 and event.currency == "SGD"


@pytest.mark.parametrize(("field", "limit"), [
    ("sid", 32), ("uid", 32), ("cat", 32), ("name", 32), ("label", 32), ("fromReqId", 32), ("source", 32),
    ("brand", 64), ("s1", 64), ("s5", 64), ("productUrl", 512), ("json", 512),
])
def test_length_limits(field, limit):
    ok, _ = _check(action="result_load", **{field: "x" * limit})
    assert ok is not None
    assert f"{field} exceeds length limit" in _reasons(action="result_load", **{field: "x" * (limit + 1)})


@pytest.mark.parametrize(("raw", "reason"), [
    ({"price": "-1"}, "price must be >= 0"),
    ({"price": "cheap"}, "price should be of data type number"),
    ({"value": "nan"}, "finite"),
    ({"currency": "ABC"}, "not an ISO 4217 code"),
    ({"currency": "dollars"}, "currency exceeds length limit"),
    ({"pos": "0"}, "pos must be an integer >= 1"),
    ({"pos": "1.5"}, "pos must be an integer >= 1"),
    ({"pos": True}, "pos must be an integer >= 1"),
    ({"ts": str(NOW // 1000)}, "ms since the epoch"),
    ({"ts": NOW + 2 * 86_400_000}, "not ahead"),
    ({"ts": 946_684_799_999}, "ms since the epoch"),  # just before 2000-01-01: ancient
    ({"ts": -1}, "ms since the epoch"),
    ({"value": 10 ** 400}, "value should be of data type number"),  # float() overflows
    ({"pos": 10 ** 400}, "pos must be an integer >= 1"),
    ({"queryId": "q\ud800"}, "queryId should be of data type text (valid Unicode)"),  # lone surrogate
    ({"os": "\udfff"}, "os should be of data type text (valid Unicode)"),
    ({"action": "bad action!"}, "action is required"),
    ({"uid": {"a": 1}}, "uid should be of data type string"),
])
def test_value_rules(raw, reason):
    assert reason in _reasons(**({"action": "result_load"} | raw))


def test_ts_defaults_to_server_time_and_pos_accepts_integral_numbers():
    event, _ = _check(action="view", pos=2.0)
    assert event.ts == NOW and event.pos == 2


def test_event_id_is_a_content_hash():
    a, _ = _check(action="product_click", queryId="q", pid="p", ts=NOW)
    b, _ = _check(action="product_click", queryId="q", pid="p", ts=NOW)
    c, _ = _check(action="product_click", queryId="q", pid="p", ts=NOW + 1)
    assert a.event_id == b.event_id != c.event_id


def test_batch_defaults_and_per_event_verdicts():
    result = validate_batch(
        [{"action": "product_view", "queryId": "q", "pid": "p"}, "not an object", {"action": "transaction"}],
        app_id="app1", now_ms=NOW, placement="plc", defaults={"uid": "u1", "sid": "s1"})
    assert [i for i, _ in result.accepted] == [0] and [i for i, _ in result.rejected] == [1, 2]
    event = result.accepted[0][1]
    assert (event.uid, event.sid, event.placement) == ("u1", "s1", "plc")


def test_legacy_pixel_maps_to_v3_names():
    assert from_legacy_pixel({"reqid": "r", "im_name": "i", "cuid": "c"}) == {
        "action": "product_click", "queryId": "r", "pid": "i", "uid": "c"}


def test_report_formulas():
    row = {"searches": 10, "results_served": 100, "clicks": 6, "clicked_searches": 4, "carted_searches": 2,
           "converted_searches": 1, "ranked_pos_sum": 9, "ranked_clicks": 4}
    m = reports.metrics(row)
    assert (m["ctr"], m["add_to_cart_rate"], m["conversion_rate"], m["click_rank"]) == (0.4, 0.2, 0.1, 2.25)
    assert reports.metrics({})["ctr"] is None
    hist = reports.histogram([{"pos": 1, "clicks": 3}, {"pos": 21, "clicks": 2}], max_pos=20)
    assert len(hist) == 21 and hist[0] == {"pos": "1", "clicks": 3}
    assert hist[-1] == {"pos": "21+", "clicks": 2}


def test_a_valid_event_keeps_non_ascii_text():
    event, errors = _check(action="product_view", queryId="q", pid="chaussure-été-👟", name="Été")
    assert errors == [] and event.pid == "chaussure-été-👟"
    assert b"\xc3\xa9" in sql.encode_row(sql.event_row(event))


_KEYS = ["action", "currency", "pos", "ts", *STRING_FIELDS, *NUMBER_FIELDS, *CONTEXT_FIELDS, "junk"]
_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300, max_value=10 ** 400)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
            | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2)
            | st.sampled_from(["product_click", "transaction", "USD", "eur", "3", "1.5", "1718000000000", ""]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
_EVENTS = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=12) | _VALUES


@settings(max_examples=400, deadline=None)
@given(raw=_EVENTS, defaults=st.none() | st.dictionaries(st.sampled_from(["uid", "sid", "sdk", "v"]), _SCALARS))
def test_any_input_gets_a_verdict_and_an_accepted_event_can_be_stored(raw, defaults):
    """Never an exception (a 500): an event, or reasons; an event's row encodes for the store."""
    event, errors = validate_item(raw, app_id="app1", now_ms=NOW, placement="plc", defaults=defaults)
    if event is None:
        assert errors and all(e.detail and e.to_item()["error_code"] for e in errors)
    else:
        assert errors == []
        assert sql.encode_row(sql.event_row(event)).startswith(b"{")
        assert len(event.event_id) == 32
