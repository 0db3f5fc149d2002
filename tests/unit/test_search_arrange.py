"""sort_by and group_by: parsing, schema checks, arrangement, envelope; refused parameters."""
import pytest

from magpie.common.controlplane.schema_provider import AppSchema
from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import InvalidRequest
from magpie.common.ports.index import Hit
from magpie.search.arrange import Group, SortBy, group_hits, sort_hits
from magpie.search.params import Unsupported, parse_params
from magpie.search.query import plan
from magpie.search.response import Outcome, envelope

pytestmark = pytest.mark.unit
SCHEMA = AppSchema("app", 1, (Field("brand", "string", True), Field("price", "float", False),
                              Field("notes", "text", True)))


def params(**kw):
    return parse_params([(k, v) for k, vs in kw.items() for v in (vs if isinstance(vs, list) else [vs])])


def hit(name, score, **payload):
    return Hit(name, score, {"im_name": name, **payload})


HITS = [hit("a", 0.9, brand="Nike", price=30.0), hit("b", 0.8, brand="Puma", price=10.0),
        hit("c", 0.7, brand="Nike"), hit("d", 0.6, brand="Nike", price=10.0),
        hit("e", 0.5, price=50.0), hit("f", 0.4, brand="Puma", price=[1, 2])]


def test_sort_by_parses_a_field_and_a_direction():
    assert params(sort_by="price:desc").sort_by == SortBy("price", True)
    assert params(sort_by="price:ASC").sort_by == SortBy("price", False)
    assert params(sort_by="price").sort_by == SortBy("price", False)
    assert params().sort_by is None and not params().arranged
    assert params(sort_by="price:asc").arranged and params(group_by="brand").arranged
    for bad in ("price:up", ":desc", "price:asc:desc"):
        with pytest.raises(InvalidRequest, match="sort_by .* must look like field:asc"):
            params(sort_by=bad)


def test_group_limit_defaults_to_one_and_is_bounded():
    assert params(group_by="brand").group_limit == 1
    assert params(group_by="brand", group_limit="100").group_limit == 100
    with pytest.raises(InvalidRequest, match="group_limit must be between 1 and 100"):
        params(group_limit="101")


@pytest.mark.parametrize(("kw", "message"), [
    ({"sort_by": "colour:asc"}, "sort_by: colour is not a field of the schema"),
    ({"group_by": "notes"}, "group_by: notes is a text field"),
])
def test_sort_and_group_fields_are_checked_against_the_schema(kw, message):
    with pytest.raises(InvalidRequest, match=message):
        plan(SCHEMA, params(**kw))
    assert plan(SCHEMA, params(sort_by="price:desc", group_by="brand")).filter == ()


@pytest.mark.parametrize("name", ["detection", "detection_limit", "detection_sensitivity",
                                  "point", "diversity", "sort_group_by", "sort_group_strategy"])
def test_parameters_that_cannot_be_honoured_are_refused_by_name(name):
    with pytest.raises(Unsupported, match=name):
        params(**{name: "all"})


def test_an_empty_detection_turns_detection_off_as_in_the_reference():
    assert params(detection="").page == 1


def test_sort_is_stable_and_puts_missing_values_last_both_ways():
    up = sort_hits(HITS, SortBy("price"))
    assert [h.im_name for h in up] == ["b", "d", "a", "e", "c", "f"]
    down = sort_hits(HITS, SortBy("price", descending=True))
    assert [h.im_name for h in down] == ["e", "a", "b", "d", "c", "f"]  # b before d: rank order
    assert [h.im_name for h in sort_hits(HITS, SortBy("brand"))] == ["a", "c", "d", "b", "f", "e"]


def test_groups_follow_their_best_item_and_keep_at_most_the_limit():
    groups = group_hits(HITS, "brand", 2)
    assert [(g.value, [h.im_name for h in g.hits]) for g in groups] == [
        ("Nike", ["a", "c"]), ("Puma", ["b", "f"])]
    assert [len(g.hits) for g in group_hits(HITS, "brand", 1)] == [1, 1]
    assert [g.value for g in group_hits(HITS, "price", 5)] == [30.0, 10.0, 50.0]


def test_envelope_carries_group_results_and_their_items_in_result():
    p = params(group_by="brand", fl="price", score="true")
    groups = group_hits(HITS, "brand", 2)
    outcome = Outcome([h for g in groups for h in g.hits], len(groups), ["price"],
                      groups=("brand", groups))
    body = envelope("search", p, outcome, "r1")
    assert body["total"] == 2 and [r["im_name"] for r in body["result"]] == ["a", "c", "b", "f"]
    assert body["group_by_key"] == "brand"
    assert body["group_results"][0] == {"group_by_value": "Nike", "result": [
        {"im_name": "a", "score": 0.9, "value_map": {"price": "30.000000"}},
        {"im_name": "c", "score": 0.7, "value_map": {}}]}
    assert "group_results" not in envelope("search", params(), Outcome([], 0), "r2")
    assert isinstance(groups[0], Group)


def test_sort_survives_a_field_holding_numbers_and_strings():
    mixed = [hit("a", 0.9, size="M"), hit("b", 0.8, size=40), hit("c", 0.7, size=38.5),
             hit("d", 0.6, size="L")]
    assert [h.im_name for h in sort_hits(mixed, SortBy("size"))] == ["c", "b", "d", "a"]
    assert [h.im_name for h in sort_hits(mixed, SortBy("size", True))] == ["a", "d", "b", "c"]
