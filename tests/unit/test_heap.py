import gc

import pytest
from prometheus_client import CollectorRegistry

from magpie.common.heap import GcPauses, freeze_startup_heap

pytestmark = pytest.mark.unit


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()  # later tests see a normal heap


def test_freeze_moves_live_objects_out_of_the_collectors_walks(unfrozen):
    kept = [object() for _ in range(1000)]
    frozen = freeze_startup_heap()
    # Other threads may free a frozen object meanwhile: the count can only have gone down.
    assert frozen >= len(kept) and len(kept) <= gc.get_freeze_count() <= frozen
    gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_pauses_are_observed_per_generation_and_uninstall_stops_them():
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.install()
    pauses.install()  # idempotent: one callback, one observation per collection
    assert gc.callbacks.count(pauses._callback) == 1
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        pauses.uninstall()
    one = registry.get_sample_value("magpie_gc_pause_seconds_count", {"generation": "1"})
    two = registry.get_sample_value("magpie_gc_pause_seconds_count", {"generation": "2"})
    assert one is not None and one >= 1 and two is not None and two >= 1
    gc.collect(2)
    assert registry.get_sample_value("magpie_gc_pause_seconds_count", {"generation": "2"}) == two
    assert pauses._callback not in gc.callbacks
