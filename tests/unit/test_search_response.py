"""Response shaping: the reference's envelope, value maps, facets and qinfo."""
import pytest

from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import InvalidRequest
from magpie.common.filters import AnyOf
from magpie.common.ports.index import FacetCount, Hit
from magpie.search.params import parse_params
from magpie.search.query import facet_fields, plan
from magpie.search.response import Facet, Outcome, envelope, format_value, qinfo_of, returned_fields

pytestmark = pytest.mark.unit
SCHEMA = AppSchema("app", 1, (Field("brand", "string", True), Field("price", "float", True),
                              Field("stock", "int", False), Field("notes", "text", True)))
PAYLOAD = {"brand": "Nike", "price": 125.0, "stock": 3, "notes": "long words",
           "im_name": "a", "@sys": {"im_url": "http://x/a.jpg", "colors": ["ff0000"]}}


def params(**kw):
    return parse_params([(k, v) for k, vs in kw.items() for v in (vs if isinstance(vs, list) else [vs])])


def test_values_print_as_the_reference_does():
    assert format_value(125.0) == "125.000000" and format_value(49.99) == "49.990000"
    assert format_value(3) == "3" and format_value("x y") == "x y" and format_value(True) == "true"


def test_text_fields_are_never_returned():
    assert returned_fields(SCHEMA, params(get_all_fl="true")) == ["im_url", "brand", "price", "stock"]
    assert returned_fields(SCHEMA, params(fl=["notes", "price", "nope", "im_url"])) == ["price", "im_url"]


def test_envelope_matches_the_reference_shape():
    p = params(fl=["price", "brand"], score="true", page="2", limit="1")
    hits = [Hit("b", 0.4371924996, PAYLOAD), Hit("c", -0.2, {"im_name": "c"})]
    outcome = Outcome(hits, 20, returned_fields(SCHEMA, p),
                      [Facet("brand", (FacetCount("brandA", 5),)), Facet("price", range=(1, 420))],
                      qinfo=qinfo_of(PAYLOAD, ["price"]))
    body = envelope("search", p, outcome, "647331357030156285")
    assert list(body) == ["status", "method", "error", "page", "limit", "total", "result",
                          "facets", "qinfo", "reqid"]
    assert body["status"] == "OK" and body["error"] == [] and (body["page"], body["limit"]) == (2, 1)
    assert body["result"][0] == {"im_name": "b", "score": 0.437192,
                                 "value_map": {"price": "125.000000", "brand": "Nike"}}
    assert body["result"][1] == {"im_name": "c", "score": 0.0, "value_map": {}}  # cosine < 0 → 0
    assert body["facets"] == [{"key": "brand", "items": [{"value": "brandA", "count": 5}]},
                              {"key": "price", "range": {"min": 1, "max": 420}}]
    assert body["qinfo"] == {"im_url": "http://x/a.jpg", "price": "125.000000"}


def test_scores_only_when_asked_and_counts_only_when_shown():
    p = params(facets_show_count="false")
    body = envelope("uploadsearch", p, Outcome([Hit("b", 0.9, PAYLOAD)], 1, [],
                                                [Facet("brand", (FacetCount("x", 2),))], im_id="i.jpg"),
                    "r")
    assert body["result"] == [{"im_name": "b", "value_map": {}}]
    assert body["facets"] == [{"key": "brand", "items": [{"value": "x"}]}] and body["im_id"] == "i.jpg"
    assert "qinfo" not in body


def test_facets_need_searchable_non_text_fields():
    assert facet_fields(SCHEMA, ["*"]) == [("brand", "string"), ("price", "float")]
    for name, message in (("notes", "text field"), ("stock", "not searchable"), ("x", "not a field")):
        with pytest.raises(InvalidRequest, match=message):
            facet_fields(SCHEMA, [name])


def test_plan_checks_fq_against_the_schema():
    assert plan(SCHEMA, params(fq="brand:Nike")).filter == (AnyOf("brand", ("Nike",)),)
    with pytest.raises(InvalidRequest, match="fq 'stock:1': stock is not searchable"):
        plan(SCHEMA, params(fq="stock:1"))
