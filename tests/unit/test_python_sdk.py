"""The Python SDK's request building, error mapping and retry policy, over httpx.MockTransport
(no network; tests/e2e/test_python_sdk.py runs the same client against a live server)."""
from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import httpx
import pytest

from magpie_sdk import (
    AsyncMagpie,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    Magpie,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from magpie_sdk import _ops as ops
from magpie_sdk.bulk import chunks
from magpie_sdk.errors import code_of_message, error_from_body

pytestmark = pytest.mark.unit
OK_SEARCH = {"status": "OK", "method": "search", "error": [], "page": 1, "limit": 10, "total": 1,
             "result": [{"im_name": "a", "score": 0.5, "value_map": {"brand": "x"}}],
             "facets": [{"key": "price", "range": {"min": 1, "max": 9}},
                        {"key": "brand", "items": [{"value": "x", "count": 3}]}]}


def client(handler, **kw) -> Magpie:
    kw.setdefault("access_key", "ak")
    kw.setdefault("secret_key", "sk")
    return Magpie("http://magpie.test", transport=httpx.MockTransport(handler), backoff=0, **kw)


def recorder(answer=lambda r: httpx.Response(200, json=OK_SEARCH)):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)
    return seen, handler


def test_search_sends_repeated_fl_and_fq_with_basic_auth_and_analytics_ids():
    seen, handler = recorder()
    result = client(handler, uid="u1", sid="s1").search(
        "a", fl=["brand", "price"], fq={"brand": "Nike OR nike", "price": "1,9"}, score=True,
        facets=["brand", "price"], limit=5)
    [req] = seen
    assert req.url.path == "/search"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"ak:sk").decode()
    assert req.headers["x-requested-with"].startswith("magpie-python/")
    assert parse_qsl(req.url.query.decode()) == [
        ("im_name", "a"), ("fl", "brand"), ("fl", "price"), ("fq", "brand:Nike OR nike"),
        ("fq", "price:1,9"), ("score", "true"), ("facets", "brand,price"), ("limit", "5"),
        ("va_uid", "u1"), ("va_sid", "s1")]
    assert result.im_names == ["a"] and result.hits[0].value_map == {"brand": "x"}
    assert result.facets[0].range == (1, 9) and result.facets[1].values[0].count == 3


def test_search_only_key_goes_as_access_key_parameter():
    seen, handler = recorder()
    client(handler, access_key=None, secret_key=None, app_key="pub").colorsearch(["#ff0000:60", "00ff00:40"])
    q = parse_qsl(seen[0].url.query.decode())
    assert "authorization" not in seen[0].headers
    assert ("access_key", "pub") in q and [v for k, v in q if k == "color"] == ["ff0000:60", "00ff00:40"]


def test_insert_is_an_indexed_form_and_refuses_more_than_100_before_sending():
    seen, handler = recorder(lambda r: httpx.Response(200, json={
        "status": "OK", "method": "insert", "total": 2, "trans_id": 7, "result": [], "error": []}))
    answer = client(handler).insert([{"im_name": "a", "im_url": "http://x/a.png", "price": 1.5,
                                      "on_sale": True, "note": None},
                                     {"im_name": "b", "im_url": "http://x/b.png"}])
    form = parse_qsl(seen[0].content.decode())
    assert form == [("im_name[0]", "a"), ("im_url[0]", "http://x/a.png"), ("price[0]", "1.5"),
                    ("on_sale[0]", "true"), ("im_name[1]", "b"), ("im_url[1]", "http://x/b.png")]
    assert answer.trans_id == 7 and answer.total == 2
    with pytest.raises(InvalidRequestError) as err:
        client(handler).insert([{"im_name": str(i)} for i in range(101)])
    assert err.value.code == 103 and len(seen) == 1


def test_uploadsearch_sends_the_file_and_box_as_multipart():
    seen, handler = recorder()
    client(handler).uploadsearch(b"\x89PNG fake", box=(1, 2, 30, 40), limit=3)
    body = seen[0].content
    assert seen[0].method == "POST" and b'name="image"' in body and b"\x89PNG fake" in body
    assert b'name="box"\r\n\r\n1,2,30,40' in body and b'name="limit"\r\n\r\n3' in body
    with pytest.raises(ValueError):
        client(handler).uploadsearch()


def test_item_errors_are_results_not_exceptions():
    body = {"status": "warning", "method": "remove", "total": 1, "trans_id": 3, "result": [],
            "error": [{"index": 1, "im_name": "b", "error_code": 102, "error_message": "Image not found with im_name."}]}
    _, handler = recorder(lambda r: httpx.Response(200, json=body))
    answer = client(handler).remove(["a", "b"])
    assert [(e.index, e.im_name, e.code) for e in answer.errors] == [(1, "b", 102)]


@pytest.mark.parametrize(("status", "body", "cls", "code"), [
    (200, {"status": "fail", "method": "search", "error": ["Image not found with im_name."]}, NotFoundError, 1101),
    (200, {"status": "fail", "method": "uploadsearch", "error": ["Invalid image or im_url: HTTP 404"]},
     InvalidRequestError, 1104),
    (200, {"status": "fail", "method": "uploadsearch", "error": ["Timeout while downloading image, x"]},
     ServerError, 1106),
    (200, {"status": "fail", "method": "search", "error": ["limit must be between 1 and 1000."]},
     InvalidRequestError, None),
    (401, {"status": "fail", "method": "search", "error": ["Invalid access key or secret key."]},
     AuthenticationError, 11),
    (403, {"status": "fail", "method": "insert", "error": [{"error_code": 12, "error_message": "search-only"}]},
     PermissionDeniedError, 12),
    (200, {"status": "fail", "method": "insert/status",
           "error": [{"error_code": 101, "error_message": "Transaction not found with trans_id."}]}, NotFoundError, 101),
    (404, {"status": "fail", "method": "transactions", "error": {"code": 101, "message": "nope"}}, NotFoundError, 101),
    (400, {"type": "about:blank", "title": "SchemaError", "status": 400, "detail": "bad", "code": 400,
           "field": "x y"}, InvalidRequestError, 400),
    (429, "slow down", RateLimitError, None),
    (502, "<html>bad gateway</html>", ServerError, None),
])
def test_every_error_shape_maps_to_a_typed_exception(status, body, cls, code):
    err = error_from_body(status, body, reqid="r1")
    assert type(err) is cls and err.code == code and err.status_code == status
    assert err.reqid == "r1"


def test_admin_problem_keeps_the_field_name():
    err = error_from_body(400, {"type": "about:blank", "title": "SchemaError", "status": 400,
                                "detail": "Field name 'x y' is invalid", "code": 400, "field": "x y"})
    assert err.field == "x y" and "x y" in str(err)


def test_known_search_messages_have_codes():
    assert code_of_message("Missing im_id: it has expired") == 1110
    assert code_of_message("Missing im_url or im_id.") == 1111
    assert code_of_message("anything else") is None


def test_retries_5xx_and_429_on_idempotent_calls_then_succeeds():
    answers = iter([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"}),
                    httpx.Response(200, json=OK_SEARCH)])
    seen, handler = recorder(lambda r: next(answers))
    assert client(handler).search("a").im_names == ["a"] and len(seen) == 3


def test_busy_legacy_answer_is_retried_too():
    busy = {"status": "fail", "method": "search", "error": ["System busy, please try again later."]}
    answers = iter([httpx.Response(200, json=busy), httpx.Response(200, json=OK_SEARCH)])
    seen, handler = recorder(lambda r: next(answers))
    assert client(handler).search("a").hits and len(seen) == 2


def test_remove_is_not_retried_after_reaching_the_server():
    seen, handler = recorder(lambda r: httpx.Response(503))
    with pytest.raises(ServerError):
        client(handler).remove(["a"])
    assert len(seen) == 1


def test_gives_up_after_max_retries():
    seen, handler = recorder(lambda r: httpx.Response(500, text="boom"))
    with pytest.raises(ServerError):
        client(handler, max_retries=2).search("a")
    assert len(seen) == 3


def test_connect_errors_retry_any_call_then_raise_transport_error():
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("refused", request=request)
    with pytest.raises(TransportError):
        client(refuse, max_retries=2).remove(["a"])
    assert len(seen) == 3


def test_read_timeouts_retry_reads_but_not_a_remove():
    seen: list[httpx.Request] = []

    def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("timed out", request=request)
    with pytest.raises(TransportError):
        client(slow, max_retries=1).insert_status(5)
    assert len(seen) == 2
    seen.clear()
    with pytest.raises(TransportError):
        client(slow, max_retries=1).remove(["a"])
    assert len(seen) == 1


def test_client_errors_are_not_retried():
    seen, handler = recorder(lambda r: httpx.Response(200, json={
        "status": "fail", "method": "search", "error": ["im_name is invalid."]}))
    with pytest.raises(InvalidRequestError):
        client(handler).search("")
    assert len(seen) == 1


def test_missing_credentials_are_a_configuration_error():
    _, handler = recorder()
    with pytest.raises(ConfigurationError):
        client(handler, secret_key=None).insert_status(1)
    with pytest.raises(ConfigurationError):
        client(handler).track("product_view", pid="a", query_id="q")  # no app key
    with pytest.raises(ConfigurationError):
        client(handler).admin.apps()  # not signed in


def test_track_batch_names_fields_as_the_reference_and_fixes_ts_for_retries():
    answers = iter([httpx.Response(502), httpx.Response(200, json={
        "status": "OK", "reqid": "r", "result": [{"index": 0, "event_id": "e0"}], "error": []})])
    seen, handler = recorder(lambda r: next(answers))
    result = client(handler, app_key="pub", uid="u", sid="s").track_batch(
        [{"action": "add_to_cart", "query_id": "q1", "pid": "a", "product_url": "http://x"}])
    first, second = (json.loads(r.content) for r in seen)
    assert first == second  # the retry resends the same events: same content-hash ids
    [ev] = first["events"]
    assert ev["queryId"] == "q1" and ev["productUrl"] == "http://x" and ev["uid"] == "u" and ev["ts"] > 0
    assert ("code", "pub") in parse_qsl(seen[0].url.query.decode())
    assert result.accepted == {0: "e0"}


def test_pixel_refusal_raises():
    _, handler = recorder(lambda r: httpx.Response(
        200, content=b"GIF89a", headers={"X-Tracking": "rejected", "X-Tracking-Error": "pid is required"}))
    with pytest.raises(InvalidRequestError, match="pid is required"):
        client(handler, app_key="pub").track("product_view", query_id="q")


def test_admin_sign_in_keeps_the_token():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/admin/v1/sessions":
            return httpx.Response(200, json={"token": "t0k", "expires_at": "2030-01-01T00:00:00Z", "member": {}})
        assert request.headers["authorization"] == "Bearer t0k"
        return httpx.Response(200, json=[{"app_id": "a1", "name": "Shop", "image_type": "general",
                                          "schema_version": 2, "created_at": "2026-01-01T00:00:00Z"}])
    c = client(handler)
    c.admin.sign_in("me@x", "pw")
    [app] = c.admin.apps()
    assert app.app_id == "a1" and app.schema_version == 2 and app.created_at.year == 2026


def test_chunks_stream_at_most_100():
    assert [len(c) for c in chunks(({"i": i} for i in range(250)), 100)] == [100, 100, 50]
    with pytest.raises(ValueError):
        list(chunks([], 101))


def test_event_sets_action_and_skips_none():
    ev = ops.event("transaction", {"query_id": "q", "value": 3, "currency": None}, "u", None)
    assert ev["action"] == "transaction" and ev["queryId"] == "q" and "currency" not in ev and "sid" not in ev


async def test_async_client_retries_and_parses():
    answers = iter([httpx.Response(503), httpx.Response(200, json=OK_SEARCH)])
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return next(answers)
    async with AsyncMagpie("http://magpie.test", app_key="pub", backoff=0,
                           transport=httpx.MockTransport(handler)) as c:
        result = await c.recommendation("a", limit=2)
    assert result.im_names == ["a"] and len(calls) == 2 and calls[0].url.path == "/recommendation"


def test_cli_says_what_is_missing(capsys, monkeypatch):
    from magpie_sdk.cli import main
    monkeypatch.delenv("MAGPIE_ACCESS_KEY", raising=False)
    monkeypatch.delenv("MAGPIE_SECRET_KEY", raising=False)
    assert main(["upload", "csv", "catalog.csv"]) == 2
    assert "--access-key and --secret-key" in capsys.readouterr().err
    assert main(["upload", "folder", "images", "--access-key", "a", "--secret-key", "b"]) == 2
    assert "--base-url" in capsys.readouterr().err
