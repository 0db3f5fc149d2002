"""SchemaProvider over a real SQLite control plane: concurrent reads share version checks
without ever answering from a check that started before the caller."""
import asyncio

import pytest

from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker
from magpie.common.controlplane.schema_provider import SchemaProvider
from magpie.common.errors import NotFound
from magpie.gateway.api.schemas import AppIn, FieldIn
from magpie.gateway.controlplane import apps, members, schema

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite3'}")
    await create_schema(engine)
    db = make_sessionmaker(engine)
    await members.ensure_initial_owner(db, "o@example.com", "password123")
    app = await apps.create_app(db, 1, AppIn(name="Shop"))
    await schema.set_schema(db, 1, app.app_id, [FieldIn(name="price", type="float", searchable=True)])
    yield db, app.app_id
    await engine.dispose()


class HeldProvider(SchemaProvider):
    """Holds each check after its query, until the test lets it go."""

    def __init__(self, db):
        super().__init__(db)
        self.release = asyncio.Event()
        self.read = asyncio.Event()

    async def _check(self, app_id):
        result = await super()._check(app_id)
        self.read.set()
        await self.release.wait()
        return result


async def test_concurrent_reads_share_a_couple_of_checks(ctx):
    db, app_id = ctx
    provider = SchemaProvider(db)
    got = await asyncio.gather(*(provider.get(app_id) for _ in range(50)))
    assert {s.version for s in got} == {1} and [f.name for f in got[0].fields] == ["price"]
    assert provider.queries <= 2
    await provider.get(app_id)  # alone: a check of its own
    assert provider.queries <= 3


async def test_a_caller_never_gets_a_check_that_started_before_it(ctx):
    db, app_id = ctx
    provider = HeldProvider(db)
    first = asyncio.create_task(provider.get(app_id))
    await provider.read.wait()  # the first check has read version 1 and is still running
    await schema.set_schema(db, 1, app_id, [FieldIn(name="price", type="float", searchable=True),
                                            FieldIn(name="brand", type="string", searchable=True)])
    second = asyncio.create_task(provider.get(app_id))
    third = asyncio.create_task(provider.get(app_id))  # joins the second's check
    await asyncio.sleep(0.05)
    provider.release.set()
    old, new, also_new = await asyncio.gather(first, second, third)
    assert (old.version, new.version, also_new.version) == (1, 2, 2)
    assert [f.name for f in new.fields] == ["price", "brand"]
    assert provider.queries == 2


async def test_an_unknown_application_fails_every_waiting_caller(ctx):
    db, _ = ctx
    provider = SchemaProvider(db)
    results = await asyncio.gather(*(provider.get("app_nope") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, NotFound) for r in results)


async def test_a_caller_giving_up_does_not_cancel_the_others(ctx):
    db, app_id = ctx
    provider = HeldProvider(db)
    impatient = asyncio.create_task(provider.get(app_id))
    patient = asyncio.create_task(provider.get(app_id))
    await provider.read.wait()
    impatient.cancel()
    provider.release.set()
    assert (await patient).version == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_max_age_skips_the_check(ctx):
    db, app_id = ctx
    provider = SchemaProvider(db)
    await provider.get(app_id)
    before = provider.queries
    for _ in range(10):
        await provider.get(app_id, max_age_s=60)
    assert provider.queries == before
