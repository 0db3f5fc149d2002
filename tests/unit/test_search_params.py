"""Search parameters: the SDKs' spellings, defaults, limits and the errors that name them."""
import pytest

from magpie.common.errors import InvalidRequest
from magpie.search.params import Box, clean_url, parse_box, parse_colors, parse_params

pytestmark = pytest.mark.unit


def parse(**params):
    pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return parse_params(pairs)


def test_defaults_are_the_references():
    p = parse()
    assert (p.page, p.limit, p.offset, p.score, p.score_min, p.score_max) == (1, 10, 0, False, 0.0, 1.0)
    assert (p.fl, p.fq, p.facets, p.dedup, p.get_all_fl, p.qinfo) == ((), (), (), False, False, False)
    assert p.facets_show_count and p.facets_limit == 10 and not p.scored_window


def test_the_python_sdks_spellings():
    # The SDK sends True/False, ints for the score bounds, and repeats fl and fq.
    p = parse(page="2", limit="30", score="True", score_min="0", score_max="1", get_all_fl="False",
              fl=["brand", "price"], fq=["brand:Nike", "price:0,99"], qinfo="true")
    assert (p.page, p.limit, p.offset, p.score, p.get_all_fl, p.qinfo) == (2, 30, 30, True, False, True)
    assert p.fl == ("brand", "price") and p.fq == ("brand:Nike", "price:0,99")


def test_facets_and_fl_take_comma_lists_and_repeats_once_each():
    p = parse(facets=["brand,price", "brand"], fl="a, b,a", facets_limit="5", facets_show_count="false")
    assert p.facets == ("brand", "price") and p.fl == ("a", "b")
    assert p.facets_limit == 5 and not p.facets_show_count
    assert parse(facets="*").facets == ("*",)


def test_dedup_and_score_bounds_need_the_window():
    assert parse(dedup="true", dedup_score_threshold="0.01").scored_window
    assert parse(score_min="0.2").scored_window and parse(score_max="0.9").scored_window


@pytest.mark.parametrize(("params", "message"), [
    ({"page": "0"}, "page must be between 1 and 1000"),
    ({"page": "x"}, "page must be an integer"),
    ({"limit": "1001"}, "limit must be between 1 and 1000"),
    ({"limit": "2.5"}, "limit must be an integer"),
    ({"page": "11", "limit": "100"}, "page\\*limit must be at most 1000"),
    ({"score": "maybe"}, "score must be false or true"),
    ({"score_max": "1.5"}, "score_max must be no more than 1"),
    ({"score_min": "-0.1"}, "score_min must be no less than 0"),
    ({"score_min": "0.8", "score_max": "0.2"}, "score_min must be no more than score_max"),
    ({"score_min": "nan"}, "finite"),
    ({"dedup_score_threshold": "2"}, "dedup_score_threshold must be no more than 1"),
    ({"facets_limit": "0"}, "facets_limit must be between"),
    ({"color": "red"}, "color is invalid"),
    ({"color": "ff0000:0"}, "weight must be between 1 and 100"),
])
def test_bad_values_name_the_parameter(params, message):
    with pytest.raises(InvalidRequest, match=message):
        parse(**params)


def test_paging_reaches_exactly_the_1000th_result():
    p = parse(page="10", limit="100")
    assert p.offset + p.limit == 1000
    assert parse(page="1000", limit="1").offset == 999


def test_im_url_double_encoded_by_the_sdk_is_decoded():
    from urllib.parse import quote

    url = "http://img.example.com/a%20b.jpg?x=1&y=2"
    assert clean_url(quote(url)) == url  # what the SDK sends, once the server decoded it
    assert clean_url("https%253A%252F%252Fx.com%252Fa.jpg") == "https://x.com/a.jpg"
    assert clean_url("http://x.com/a%20b.jpg") == "http://x.com/a%20b.jpg"  # already plain
    assert parse(im_url="http%3A//x.com/a.png").im_url == "http://x.com/a.png"


def test_box_is_four_numbers_with_area_else_ignored():
    assert parse_box("10,20,110,220") == Box(10, 20, 110, 220)
    assert parse_box("1.5,2,3,4") == Box(1.5, 2, 3, 4)
    for bad in ("", "1,2,3", "a,b,c,d", "10,10,10,10", "50,0,10,10", "-1,0,5,5", "1,2,3,4,5"):
        assert parse_box(bad) is None, bad


def test_colors_with_optional_weights():
    assert parse_colors(["FA4D4D"]) == [("fa4d4d", 100.0)]
    assert parse_colors(["#000000:30", "ffffff:70"]) == [("000000", 30.0), ("ffffff", 70.0)]
    with pytest.raises(InvalidRequest, match="At most"):
        parse_colors(["000000"] * 17)
