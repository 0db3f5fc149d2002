"""Typed errors and their rendering in each API family's format."""
import json

import pytest
from starlette.requests import Request

from magpie.common.errors import (
    InvalidCredentials,
    NotFound,
    SchemaError,
    Unauthorized,
    ValueTooLong,
    WrongType,
)
from magpie.gateway.errors import render

pytestmark = pytest.mark.unit


class _Route:
    def __init__(self, name):
        self.name = name


def _request(path, route_name=None):
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    if route_name:
        scope["route"] = _Route(route_name)
    return Request(scope)


def _body(response):
    return json.loads(response.body)


def test_messages_take_their_context():
    assert ValueTooLong(parameter="title").detail == "title exceeds length limit."
    assert WrongType(field="price", type="float").to_item() == {
        "error_code": 109, "error_message": "price should be of data type float.",
        "field": "price", "type": "float"}


def test_legacy_search_error_is_http_200_with_string_errors():
    r = render(_request("/search", "search"), NotFound("Image not found with im_name."))
    assert r.status_code == 200
    assert _body(r) == {"status": "fail", "method": "search", "error": ["Image not found with im_name."],
                        "result": [], "total": 0, "page": 0, "limit": 0}


def test_legacy_data_error_lists_error_objects():
    r = render(_request("/insert", "insert"), ValueTooLong(parameter="title"))
    body = _body(r)
    assert r.status_code == 200 and body["method"] == "insert"
    assert body["error"][0]["error_code"] == 106


@pytest.mark.parametrize(("err", "status"), [(InvalidCredentials(), 401), (Unauthorized(), 403)])
def test_auth_errors_keep_their_http_status_on_legacy_routes(err, status):
    r = render(_request("/insert", "insert"), err)
    assert r.status_code == status and _body(r)["status"] == "fail"


def test_json_api_uses_real_status_and_an_error_object():
    r = render(_request("/v1/apps/x/schema", "schema"), NotFound("No application x."))
    assert r.status_code == 404
    assert _body(r)["error"] == {"code": 404, "message": "No application x."}


def test_admin_api_speaks_problem_json_and_names_the_field():
    r = render(_request("/admin/v1/apps/a/schema"), SchemaError("bad", field="bad-name"))
    assert r.status_code == 400 and r.media_type == "application/problem+json"
    assert _body(r)["field"] == "bad-name" and _body(r)["detail"] == "bad"
