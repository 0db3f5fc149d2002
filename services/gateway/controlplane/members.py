"""Accounts, team members, roles and sign-in sessions."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.secrets import hash_password, hash_token, new_token, verify_password
from magpie.common.controlplane.tables import Account, Member, Session, utcnow
from magpie.common.errors import Conflict, InvalidRequest, NotFound, NotSignedIn, Unauthorized
from magpie.gateway.api.schemas import MemberIn, MemberOut, MemberPatch, SessionOut

log = logging.getLogger(__name__)
ROLE_RANK = {"viewer": 0, "admin": 1, "owner": 2}


def require_role(member: Member, role: str) -> None:
    """Raise Unauthorized unless `member` has at least `role`."""
    if ROLE_RANK[member.role] < ROLE_RANK[role]:
        raise Unauthorized(f"This action needs the '{role}' role; you are '{member.role}'.")


async def ensure_initial_owner(db: async_sessionmaker, email: str, password: str | None) -> str | None:
    """Create the first account and its owner if there is no member yet.

    Returns the generated password when none was configured, so the caller prints it once.
    """
    async with db() as s, s.begin():
        if await s.scalar(select(func.count()).select_from(Member)):
            return None
        generated = None
        if not password:
            generated = password = new_token()[:20]
        account = Account(name="Default")
        s.add(account)
        await s.flush()
        s.add(Member(account_id=account.id, email=email, name="Owner", role="owner",
                     password_hash=hash_password(password)))
    log.info("created the initial owner %s", email)
    return generated


async def sign_in(db: async_sessionmaker, email: str, password: str, ttl_s: int) -> SessionOut:
    """Check a member's password and open a session; the token is returned once."""
    async with db() as s, s.begin():
        member = await s.scalar(select(Member).where(Member.email == email))
        # Hash even for an unknown email so timing does not tell which emails exist.
        ok = verify_password(password, member.password_hash if member else "scrypt$00$00")
        if member is None or not ok:
            raise NotSignedIn("Wrong email or password.")
        token = new_token()
        expires = utcnow() + timedelta(seconds=ttl_s)
        s.add(Session(token_hash=hash_token(token), member_id=member.id, expires_at=expires))
        await s.execute(delete(Session).where(Session.expires_at < utcnow()))
        return SessionOut(token=token, expires_at=expires, member=MemberOut.model_validate(member))


async def member_for_token(db: async_sessionmaker, token: str) -> Member:
    """The member a live session token belongs to."""
    async with db() as s:
        row = await s.get(Session, hash_token(token))
        if row is None or row.expires_at < utcnow():
            raise NotSignedIn("Session expired or unknown; sign in again.")
        member = await s.get(Member, row.member_id)
        if member is None:
            raise NotSignedIn("Session expired or unknown; sign in again.")
        return member


async def sign_out(db: async_sessionmaker, token: str) -> None:
    """End a session; unknown tokens are ignored."""
    async with db() as s, s.begin():
        await s.execute(delete(Session).where(Session.token_hash == hash_token(token)))


async def list_members(db: async_sessionmaker, account_id: int) -> list[MemberOut]:
    """Every member of an account."""
    async with db() as s:
        rows = await s.scalars(select(Member).where(Member.account_id == account_id).order_by(Member.id))
        return [MemberOut.model_validate(m) for m in rows]


async def add_member(db: async_sessionmaker, account_id: int, body: MemberIn) -> MemberOut:
    """Add a team member; emails are unique across the installation."""
    async with db() as s, s.begin():
        if await s.scalar(select(Member.id).where(Member.email == body.email)):
            raise Conflict(f"A member with email {body.email} already exists.")
        member = Member(account_id=account_id, email=body.email, name=body.name, role=body.role,
                        password_hash=hash_password(body.password))
        s.add(member)
        await s.flush()
        return MemberOut.model_validate(member)


async def update_member(db: async_sessionmaker, account_id: int, member_id: int, body: MemberPatch) -> MemberOut:
    """Change a member's name, role or password; the last owner cannot be demoted."""
    async with db() as s, s.begin():
        member = await _member(s, account_id, member_id)
        if body.role and body.role != "owner" and member.role == "owner":
            await _keep_an_owner(s, account_id)
        if body.name is not None:
            member.name = body.name
        if body.role is not None:
            member.role = body.role
        if body.password is not None:
            member.password_hash = hash_password(body.password)
            await s.execute(delete(Session).where(Session.member_id == member.id))
        await s.flush()
        return MemberOut.model_validate(member)


async def remove_member(db: async_sessionmaker, account_id: int, member_id: int) -> None:
    """Remove a member and end their sessions; the last owner stays."""
    async with db() as s, s.begin():
        member = await _member(s, account_id, member_id)
        if member.role == "owner":
            await _keep_an_owner(s, account_id)
        await s.delete(member)


async def _member(s, account_id: int, member_id: int) -> Member:  # noqa: ANN001
    member = await s.get(Member, member_id)
    if member is None or member.account_id != account_id:
        raise NotFound(f"No member {member_id}.")
    return member


async def _keep_an_owner(s, account_id: int) -> None:  # noqa: ANN001
    owners = await s.scalar(
        select(func.count()).select_from(Member).where(Member.account_id == account_id, Member.role == "owner")
    )
    if owners <= 1:
        raise InvalidRequest("An account needs at least one owner; make another member owner first.")

