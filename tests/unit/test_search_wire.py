"""The search service's internal wire format: what the gateway sends comes back the same."""
import numpy as np
import pytest

from magpie.common.errors import ImageNotFound, InvalidRequest, NoImages, Unavailable
from magpie.common.filters import AnyOf, Between, TextMatch
from magpie.common.ports.index import Hit, IndexPoint
from magpie.search import wire

pytestmark = pytest.mark.unit


def test_filters_round_trip_with_their_value_types():
    flt = (AnyOf("brand", ("Nike", 'say "hi"')), AnyOf("stock", (1, 2)),
           Between("price", 10.0, None), Between("year", None, 2020), TextMatch("title", "red shoe"))
    back = wire.filter_in(wire.filter_out(flt))
    assert back == flt
    assert [type(v) for v in back[1].values] == [int, int]


@pytest.mark.parametrize("bad", [[{"op": "near", "field": "x"}], [{"op": "any_of"}], [{"field": "x"}],
                                 [{"op": "between", "field": "x", "low": 1}]])
def test_a_malformed_filter_is_an_invalid_request(bad):
    with pytest.raises(InvalidRequest):
        wire.filter_in(bad)


def test_vectors_points_and_hits_round_trip_as_float32():
    vector = np.random.default_rng(1).random(1280, dtype=np.float32)
    text = wire.vector_out(vector)
    assert len(text) == 4 * ((1280 * 4 + 2) // 3)  # base64 of the raw float32 bytes
    assert wire.vector_in(text) == vector.tolist()
    point = IndexPoint("a", vector.tolist(), {"brand": "x", "@sys": {"h": 1}})
    assert wire.point_in(wire.point_out(point)) == point
    assert wire.point_in(wire.point_out(None)) is None
    hit = Hit("b", 0.5, {"k": 1}, [0.25, 0.5])
    assert wire.hit_in(wire.hit_out(hit)) == hit
    assert wire.hit_in(wire.hit_out(Hit("c", 0.1))).vector is None


def test_typed_errors_come_back_as_the_same_class():
    for exc in (ImageNotFound(), NoImages(), InvalidRequest("limit is invalid.")):
        back = wire.error_in(wire.error_out(exc))
        assert type(back) is type(exc) and back.detail == exc.detail
    assert isinstance(wire.error_in({"type": "KeyError", "detail": "x"}), Unavailable)
    assert isinstance(wire.error_in({}), Unavailable)
    assert isinstance(wire.error_in({"type": "MagpieError", "detail": "System error."}), Unavailable)
