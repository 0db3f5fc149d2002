"""The fq filter language: the brief's examples, errors, and round trips."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from magpie.common.controlplane.schema_rules import Field
from magpie.common.filters import AnyOf, Between, TextMatch
from magpie.search.fq import FilterError, parse_filters

pytestmark = pytest.mark.unit
SCHEMA = [Field("brand", "string", True), Field("price", "float", True), Field("stock", "int", True),
          Field("description", "text", True), Field("sku", "string", False)]


def parse(*fqs):
    return parse_filters(fqs, SCHEMA)


def test_string_exact_and_or_and_quotes_from_the_brief():
    assert parse("brand:Vintage Wingtips") == (AnyOf("brand", ("Vintage Wingtips",)),)
    assert parse("brand:Wingtips OR Longwing") == (AnyOf("brand", ("Wingtips", "Longwing")),)
    assert parse("""brand:"Women's shoes" OR "Women's Clothes\"""") == (
        AnyOf("brand", ("Women's shoes", "Women's Clothes")),)
    assert parse('brand:"a:b,c OR d"') == (AnyOf("brand", ("a:b,c OR d",)),)
    assert parse(r'brand:"say \"hi\" \\ ok"') == (AnyOf("brand", ('say "hi" \\ ok',)),)
    assert parse("brand:ORANGE") == (AnyOf("brand", ("ORANGE",)),)  # OR only as a word


def test_numbers_exact_and_inclusive_ranges():
    assert parse("price:0.0,199.99", "stock:5") == (Between("price", 0.0, 199.99), AnyOf("stock", (5,)))
    assert parse("stock:0,199") == (Between("stock", 0, 199),)
    assert parse("price:1,999999999999") == (Between("price", 1.0, 999999999999.0),)
    assert parse("price:10,") == (Between("price", 10.0, None),)
    assert parse("stock:1 OR 3") == (AnyOf("stock", (1, 3)),)


def test_text_is_full_text():
    assert parse("description:leather sandals") == (TextMatch("description", "leather sandals"),)


@pytest.mark.parametrize(("fq", "message"), [
    ("brand", "field:value"),
    ("colour:red", "not a field"),
    ("sku:A1", "not searchable"),
    ("brand:", "empty"),
    ('brand:"open', "not closed"),
    ("brand:a OR", "missing"),
    ("brand:OR a", "missing"),
    ('brand:"a" b', "expected OR"),
    ("price:cheap", "not a number"),
    ("price:nan", "finite"),
    ("stock:1.5", "not an integer"),
    ("stock:9,1", "above its max"),
    ("stock:1,2,3", "one comma"),
    ("stock:,", "at least one bound"),
])
def test_bad_filters_say_why(fq, message):
    with pytest.raises(FilterError, match=message):
        parse(fq)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
                .filter(lambda s: s.strip() == s and s), min_size=1, max_size=4))
def test_any_quoted_values_round_trip(values):
    quoted = " OR ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    assert parse(f"brand:{quoted}") == (AnyOf("brand", tuple(values)),)


@given(st.integers(-10**12, 10**12), st.integers(-10**12, 10**12))
def test_int_ranges_round_trip(a, b):
    low, high = min(a, b), max(a, b)
    assert parse(f"stock:{low},{high}") == (Between("stock", low, high),)
