"""API call counting in the gateway."""
import pytest

from magpie.gateway.metrics import ApiUsage

pytestmark = pytest.mark.unit


def test_counts_per_app_and_endpoint_and_drains_to_zero():
    usage = ApiUsage()
    for _ in range(3):
        usage.record("app_a", "/insert")
    usage.record("app_b", "/search")
    counts = usage.drain()
    assert sorted((a, e, n) for (a, _day, e), n in counts.items()) == [
        ("app_a", "/insert", 3), ("app_b", "/search", 1)]
    assert usage.drain() == {}
