"""Row validation against a schema: the reference's codes 103-109."""
import pytest

from magpie.common.controlplane.schema_rules import Field
from magpie.common.errors import (
    InvalidImageName,
    MissingImageUrl,
    NothingInserted,
    BatchTooLarge,
    TooManyFields,
    ValueTooLong,
    WrongType,
)
from magpie.ingestion.validation import RawItem, check_batch, parse_indexed_form, validate_item

pytestmark = pytest.mark.unit
SCHEMA = [Field("brand", "string", True), Field("price", "float", True), Field("stock", "int"),
          Field("notes", "text")]


def test_form_fields_group_by_index_and_skip_unindexed_keys():
    items = parse_indexed_form([("im_name[1]", "b"), ("im_name[0]", "a"), ("im_url[0]", "http://x/a.jpg"),
                                ("access_key", "k"), ("brand[0]", "Nike"), ("bad[x]", "y")])
    assert [(i.index, i.values) for i in items] == [
        (0, {"im_name": "a", "im_url": "http://x/a.jpg", "brand": "Nike"}), (1, {"im_name": "b"})]


def test_batch_limits():
    with pytest.raises(NothingInserted):
        check_batch([])
    with pytest.raises(BatchTooLarge):
        check_batch([RawItem(i, {}) for i in range(101)])
    check_batch([RawItem(i, {}) for i in range(100)])


def test_values_are_typed_and_unknown_fields_ignored():
    item = validate_item(0, {"im_name": "a", "im_url": "http://x/a.jpg", "brand": "Nike", "price": "49.99",
                             "stock": "-3", "notes": "long text", "colour": "red"}, SCHEMA, exists=False)
    assert item.fields == {"brand": "Nike", "price": 49.99, "stock": -3, "notes": "long text"}


def test_empty_number_cells_mean_no_value():
    item = validate_item(0, {"im_name": "a", "im_url": "http://x/a.jpg", "price": " "}, SCHEMA, exists=False)
    assert item.fields == {}


@pytest.mark.parametrize(("values", "error"), [
    ({"im_name": "", "im_url": "http://x"}, InvalidImageName),
    ({"im_name": "n" * 129, "im_url": "http://x"}, InvalidImageName),
    ({"im_name": "a"}, MissingImageUrl),
    ({"im_name": "a", "im_url": "http://x", "price": "cheap"}, WrongType),
    ({"im_name": "a", "im_url": "http://x", "price": "nan"}, WrongType),
    ({"im_name": "a", "im_url": "http://x", "stock": "1.5"}, WrongType),
    ({"im_name": "a", "im_url": "http://x", "brand": "x" * 5001}, ValueTooLong),
    ({"im_name": "a", "im_url": "http://x", **{f"f{i}": "v" for i in range(31)}}, TooManyFields),
])
def test_each_rule_has_its_code(values, error):
    with pytest.raises(error):
        validate_item(0, values, SCHEMA, exists=False)


def test_messages_name_the_field():
    with pytest.raises(WrongType, match="price should be of data type float"):
        validate_item(0, {"im_name": "a", "im_url": "http://x", "price": "x"}, SCHEMA, exists=False)
    with pytest.raises(ValueTooLong, match="brand exceeds length limit"):
        validate_item(0, {"im_name": "a", "im_url": "http://x", "brand": "x" * 5001}, SCHEMA, exists=False)


def test_existing_item_may_update_metadata_without_url():
    item = validate_item(0, {"im_name": "a", "price": "5"}, SCHEMA, exists=True)
    assert item.im_url is None and item.fields == {"price": 5.0}
