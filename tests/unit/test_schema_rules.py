"""The seed's schema rules."""
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from magpie.common.controlplane.schema_rules import (
    MAX_CUSTOM_FIELDS,
    RECOMMENDED_FIELDS,
    Field,
    removed_fields,
    validate_field_name,
    validate_schema,
)
from magpie.common.errors import SchemaError

pytestmark = pytest.mark.unit
NAME_CHARS = string.ascii_letters + string.digits + "_"


@given(st.text(alphabet=NAME_CHARS, min_size=1, max_size=32).filter(lambda n: n not in ("im_name", "im_url")))
def test_every_legal_name_is_accepted(name):
    assert validate_field_name(name) == name


@given(st.text(min_size=1, max_size=40).filter(lambda n: any(c not in NAME_CHARS for c in n)))
def test_any_other_character_is_refused(name):
    with pytest.raises(SchemaError) as err:
        validate_field_name(name)
    assert err.value.field == name


def test_name_of_33_chars_is_refused_and_32_accepted():
    assert validate_field_name("a" * 32) == "a" * 32
    with pytest.raises(SchemaError, match="longer than 32"):
        validate_field_name("a" * 33)


@pytest.mark.parametrize("name", ["im_name", "im_url"])
def test_mandatory_fields_cannot_be_redeclared(name):
    with pytest.raises(SchemaError, match="mandatory"):
        validate_field_name(name)


def test_thirty_custom_fields_pass_and_the_31st_is_named():
    fields = [Field(f"f{i}", "string") for i in range(MAX_CUSTOM_FIELDS)]
    assert len(validate_schema(fields)) == 30
    with pytest.raises(SchemaError) as err:
        validate_schema([*fields, Field("extra", "int")])
    assert err.value.field == "extra"


def test_duplicate_name_is_refused_but_names_are_case_sensitive():
    assert len(validate_schema([Field("price", "float"), Field("Price", "float")])) == 2
    with pytest.raises(SchemaError) as err:
        validate_schema([Field("price", "float"), Field("price", "int")])
    assert err.value.field == "price"


def test_unknown_type_is_refused():
    with pytest.raises(SchemaError, match="unknown type 'date'") as err:
        validate_schema([Field("when", "date")])  # type: ignore[arg-type]
    assert err.value.field == "when"


def test_recommended_preset_is_a_valid_schema_with_the_seeds_types():
    fields = validate_schema(RECOMMENDED_FIELDS)
    types = {f.name: f.type for f in fields}
    assert types["price"] == "float" and types["discounted_price"] == "float"
    assert types["category"] == "string" and "product_url" in types


def test_removed_fields_include_type_changes_but_not_flag_changes():
    old = [Field("a", "string"), Field("b", "int"), Field("c", "text")]
    new = [Field("a", "string", searchable=True), Field("b", "float")]
    assert removed_fields(old, new) == ["b", "c"]
