"""Ingestion use cases over a real SQLite store: transactions, statuses, replay."""
import asyncio

import pytest

from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.errors import TransactionNotFound
from magpie.common.events.ingest import ItemOp, ItemStatus
from magpie.gateway.api.schemas import FieldIn
from magpie.ingestion import service
from magpie.ingestion.service import IngestDeps
from magpie.ingestion.store import IngestStore
from tests.fixtures.recording import RecordingBus
from tests.fixtures.control import control_plane, new_app

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(tmp_path):
    engine, db = await control_plane(tmp_path / "c.sqlite3")
    app = await new_app(db, "Shop", [FieldIn(name="price", type="float", searchable=True)])
    deps = IngestDeps(store=IngestStore(db), bus=RecordingBus(), schemas=SchemaProvider(db))
    yield deps, app.app_id
    await engine.dispose()


def _ok(e, ok=True, code=None):
    return ItemStatus(app_id=e.app_id, trans_id=e.trans_id, im_name=e.im_name, op=e.op, stage="search",
                      ok=ok, error_code=code, error_message=None if ok else "Could not download the image from im_url.")


async def test_insert_reports_bad_items_and_publishes_good_ones(ctx):
    deps, app_id = ctx
    result = await service.insert(deps, app_id, [
        (0, {"im_name": "a", "im_url": "http://x/a.jpg", "price": "1.5"}),
        (1, {"im_name": "b", "im_url": "http://x/b.jpg", "price": "free"}),
        (2, {"im_name": "c"}),
    ])
    assert result.total == 1 and [(e.index, e.error.code) for e in result.errors] == [(1, 109), (2, 108)]
    [event] = deps.bus.events
    assert (event.op, event.fields, event.trans_id) == (ItemOp.UPSERT, {"price": 1.5}, result.trans_id)
    st = await deps.store.status(app_id, result.trans_id)
    assert (st.total, st.success_count, st.fail_count, st.processed_percent) == (1, 0, 0, 0)


async def test_statuses_count_once_and_finish_the_transaction(ctx):
    deps, app_id = ctx
    result = await service.insert(deps, app_id, [(i, {"im_name": f"i{i}", "im_url": f"http://x/{i}.jpg"})
                                                 for i in range(4)])
    a, b, c, d = deps.bus.events
    for event in (a, b, c):
        assert await deps.store.record(_ok(event))
    assert not await deps.store.record(_ok(a))  # a redelivered status changes nothing
    await deps.store.record(_ok(d, ok=False, code=201))
    st = await deps.store.status(app_id, result.trans_id, error_page=1, error_limit=10)
    assert (st.success_count, st.fail_count, st.processed_percent) == (3, 1, 100)
    assert [(e.im_name, e.error_code) for e in st.errors] == [("i3", 201)]
    # i3 was new and failed: it is not in the catalog, the others are.
    assert await deps.store.existing(app_id, ["i0", "i3"]) == {"i0"}


async def test_metadata_update_needs_an_existing_item_and_remove_reports_unknown(ctx):
    deps, app_id = ctx
    await service.insert(deps, app_id, [(0, {"im_name": "a", "im_url": "http://x/a.jpg"})])
    await deps.store.record(_ok(deps.bus.events[-1]))
    upd = await service.insert(deps, app_id, [(0, {"im_name": "a", "price": "9"})])
    assert upd.total == 1 and deps.bus.events[-1].op is ItemOp.METADATA
    gone = await service.remove(deps, app_id, [(0, "a"), (1, "nope")])
    assert gone.total == 1 and [(e.im_name, e.error.code) for e in gone.errors] == [("nope", 102)]
    assert deps.bus.events[-1].op is ItemOp.REMOVE
    assert await deps.store.existing(app_id, ["a"]) == set()


async def test_replay_publishes_only_unfinished_items(ctx):
    deps, app_id = ctx
    await service.insert(deps, app_id, [(i, {"im_name": f"i{i}", "im_url": f"http://x/{i}.jpg"}) for i in range(3)])
    await deps.store.record(_ok(deps.bus.events[0]))
    deps.bus.events.clear()
    assert await service.replay_pending(deps) == 2
    assert sorted(e.im_name for e in deps.bus.events) == ["i1", "i2"]


async def test_status_of_another_application_is_not_found(ctx):
    deps, app_id = ctx
    result = await service.insert(deps, app_id, [(0, {"im_name": "a", "im_url": "http://x/a.jpg"})])
    with pytest.raises(TransactionNotFound):
        await deps.store.status("app_other", result.trans_id)


async def test_statuses_arriving_together_share_one_transaction(ctx):
    deps, app_id = ctx
    result = await service.insert(deps, app_id, [(i, {"im_name": f"i{i}", "im_url": f"http://x/{i}.jpg"})
                                                 for i in range(60)])
    events = deps.bus.events
    before = deps.store.flushes
    applied = await asyncio.gather(*(deps.store.record(_ok(e, ok=i % 10 != 0, code=None if i % 10 else 201))
                                     for i, e in enumerate(events)))
    assert applied == [True] * 60
    assert deps.store.flushes - before <= 3  # grouped: not one commit per status
    st = await deps.store.status(app_id, result.trans_id, error_limit=100)
    assert (st.success_count, st.fail_count, st.processed_percent) == (54, 6, 100)
    # Redelivered (twice in one group, too): applied once, reported as already applied.
    again = await asyncio.gather(*(deps.store.record(_ok(e)) for e in events[:5] + events[:5]))
    assert again == [False] * 10
    assert (await deps.store.status(app_id, result.trans_id)).fail_count == 6
    # The new items whose image failed left the catalog; the others are in it.
    assert await deps.store.existing(app_id, ["i0", "i1", "i10", "i11"]) == {"i1", "i11"}


async def test_a_status_that_cannot_be_written_fails_alone(ctx):
    deps, app_id = ctx
    await service.insert(deps, app_id, [(i, {"im_name": f"i{i}", "im_url": f"http://x/{i}.jpg"})
                                        for i in range(3)])
    good = [_ok(e) for e in deps.bus.events]
    bad = good[0].model_copy(update={"trans_id": 2**70})  # beyond SQLite's integers
    results = await asyncio.gather(*(deps.store.record(st) for st in [good[0], bad, good[1], good[2]]),
                                   return_exceptions=True)
    assert results[0] is True and results[2] is True and results[3] is True
    assert isinstance(results[1], Exception)  # its handler raises: the bus retries it
    assert (await deps.store.status(app_id, good[0].trans_id)).success_count == 3
