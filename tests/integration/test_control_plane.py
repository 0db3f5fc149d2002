"""Control-plane use cases against real SQLite and PostgreSQL stores."""
import pytest
from sqlalchemy import select

from magpie.common.controlplane.db import create_schema, make_engine, make_sessionmaker
from magpie.common.controlplane.outbox import relay_once
from magpie.common.controlplane.tables import Account, OutboxEvent
from magpie.common.errors import (
    InvalidCredentials,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    NotSignedIn,
    SchemaError,
)
from magpie.common.events.control import ApplicationCreated, ApplicationDeleted, SchemaChanged
from magpie.gateway.api.schemas import AppIn, FieldIn, FieldPatch, MemberIn, MemberPatch
from magpie.gateway.controlplane import access, apps, members, schema
from tests.fixtures.recording import RecordingBus

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'control.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    if request.param == "postgresql":
        from magpie.common.controlplane.tables import Base

        async with engine.begin() as conn:  # a clean database per test
            await conn.run_sync(Base.metadata.drop_all)
    await create_schema(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _account(db) -> int:
    await members.ensure_initial_owner(db, "owner@example.com", "correct horse battery")
    async with db() as s:
        return await s.scalar(select(Account.id))


async def _second_account(db) -> int:
    async with db() as s, s.begin():
        acc = Account(name="Other")
        s.add(acc)
        await s.flush()
        return acc.id


async def test_initial_owner_once_and_sign_in(db):
    generated = await members.ensure_initial_owner(db, "owner@example.com", None)
    assert generated and len(generated) >= 16
    assert await members.ensure_initial_owner(db, "owner@example.com", None) is None
    session = await members.sign_in(db, "owner@example.com", generated, ttl_s=60)
    member = await members.member_for_token(db, session.token)
    assert member.role == "owner"
    with pytest.raises(NotSignedIn):
        await members.sign_in(db, "owner@example.com", "wrong", ttl_s=60)
    await members.sign_out(db, session.token)
    with pytest.raises(NotSignedIn):
        await members.member_for_token(db, session.token)


async def test_expired_session_is_refused(db):
    await _account(db)
    session = await members.sign_in(db, "owner@example.com", "correct horse battery", ttl_s=-1)
    with pytest.raises(NotSignedIn):
        await members.member_for_token(db, session.token)


async def test_app_lifecycle_keys_and_events(db):
    acc = await _account(db)
    created = await apps.create_app(db, acc, AppIn(name="Shoes", image_type="fashion"))
    assert created.app_id.startswith("app_") and created.secret_key
    full = await access.by_secret(db, created.access_key, created.secret_key)
    assert (full.app_id, full.scope) == (created.app_id, "full")
    search = await access.by_app_key(db, created.app_key)
    assert (search.app_id, search.scope) == (created.app_id, "search")
    with pytest.raises(InvalidCredentials):
        await access.by_secret(db, created.access_key, "not-the-secret")
    with pytest.raises(InvalidCredentials):
        await access.by_app_key(db, created.access_key)  # an access key is not an app key

    assert (await apps.rename_app(db, acc, created.app_id, "Boots")).name == "Boots"
    for _ in range(9):
        await apps.create_key(db, acc, created.app_id)
    with pytest.raises(LimitExceeded):
        await apps.create_key(db, acc, created.app_id)
    await apps.revoke_key(db, acc, created.app_id, created.access_key)
    with pytest.raises(InvalidCredentials):
        await access.by_secret(db, created.access_key, created.secret_key)
    with pytest.raises(InvalidCredentials):
        await access.by_app_key(db, created.app_key)
    assert len(await apps.list_keys(db, acc, created.app_id)) == 10
    await apps.create_key(db, acc, created.app_id)  # a revoked key frees a slot

    await apps.delete_app(db, acc, created.app_id)
    assert await apps.list_apps(db, acc) == []
    bus = RecordingBus()
    assert await relay_once(db, bus) == 2
    assert [type(e) for e in bus.events] == [ApplicationCreated, ApplicationDeleted]
    assert await relay_once(db, bus) == 0  # published events leave the outbox


async def test_unknown_image_type_is_refused(db):
    acc = await _account(db)
    with pytest.raises(InvalidRequest, match="fashion"):
        await apps.create_app(db, acc, AppIn(name="X", image_type="cars"))


async def test_another_accounts_app_is_not_found(db):
    acc = await _account(db)
    other = await _second_account(db)
    app = await apps.create_app(db, acc, AppIn(name="Mine"))
    for call in (apps.show_app(db, other, app.app_id), apps.delete_app(db, other, app.app_id),
                 apps.list_keys(db, other, app.app_id), schema.get_schema(db, other, app.app_id)):
        with pytest.raises(NotFound):
            await call
    assert (await apps.show_app(db, acc, app.app_id)).name == "Mine"


async def test_schema_set_edit_remove_and_bad_schema_keeps_old(db):
    acc = await _account(db)
    app = await apps.create_app(db, acc, AppIn(name="S"))
    out = await schema.set_schema(db, acc, app.app_id, [
        FieldIn(name="brand", type="string", searchable=True), FieldIn(name="price", type="float")])
    assert out.version == 1 and [f.name for f in out.fields] == ["brand", "price"]
    for bad in ([FieldIn(name="bad name", type="string")],
                [FieldIn(name="a", type="string"), FieldIn(name="a", type="int")],
                [FieldIn(name=f"f{i}", type="string") for i in range(31)],
                [FieldIn(name="x" * 33, type="string")],
                [FieldIn(name="when", type="date")]):
        with pytest.raises(SchemaError):
            await schema.set_schema(db, acc, app.app_id, bad)
    assert (await schema.get_schema(db, acc, app.app_id)) == out

    out = await schema.add_field(db, acc, app.app_id, FieldIn(name="notes", type="text"))
    out = await schema.update_field(db, acc, app.app_id, "price", FieldPatch(searchable=True))
    out = await schema.remove_field(db, acc, app.app_id, "brand")
    assert out.version == 4 and [(f.name, f.searchable) for f in out.fields] == [("price", True), ("notes", False)]
    with pytest.raises(NotFound):
        await schema.remove_field(db, acc, app.app_id, "brand")

    bus = RecordingBus()
    while await relay_once(db, bus):
        pass
    changes = [e for e in bus.events if isinstance(e, SchemaChanged)]
    assert [c.schema_version for c in changes] == [1, 2, 3, 4]
    assert changes[-1].removed == ["brand"]
    async with db() as s:
        assert (await s.scalars(select(OutboxEvent))).all() == []


async def test_members_roles_and_last_owner(db):
    acc = await _account(db)
    added = await members.add_member(db, acc, MemberIn(email="ann@example.com", password="password1", role="admin"))
    assert added.role == "admin"
    with pytest.raises(Exception, match="already exists"):
        await members.add_member(db, acc, MemberIn(email="ann@example.com", password="password1"))
    owner = (await members.list_members(db, acc))[0]
    with pytest.raises(InvalidRequest, match="at least one owner"):
        await members.update_member(db, acc, owner.id, MemberPatch(role="viewer"))
    with pytest.raises(InvalidRequest):
        await members.remove_member(db, acc, owner.id)
    await members.update_member(db, acc, added.id, MemberPatch(role="owner"))
    await members.update_member(db, acc, owner.id, MemberPatch(role="viewer"))
    await members.remove_member(db, acc, owner.id)
    assert [m.email for m in await members.list_members(db, acc)] == ["ann@example.com"]
    other = await _second_account(db)
    with pytest.raises(NotFound):
        await members.remove_member(db, other, added.id)
