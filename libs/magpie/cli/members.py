"""`magpie members`: the account's team."""
from __future__ import annotations

import typer

from magpie.cli.context import AccountOpt, emit, run_with_db
from magpie.gateway.api.schemas import MemberIn, MemberPatch
from magpie.gateway.controlplane import members as uc

members_cli = typer.Typer(help="List, add, change and remove team members.", no_args_is_help=True)


@members_cli.command("list")
def list_(account: int | None = AccountOpt) -> None:
    """List team members."""
    emit(run_with_db(uc.list_members, account))


@members_cli.command("add")
def add(
    email: str,
    role: str = typer.Option("viewer", "--role", help="owner, admin or viewer."),
    name: str = typer.Option("", "--name"),
    password: str = typer.Option(..., "--password", prompt=True, hide_input=True),
    account: int | None = AccountOpt,
) -> None:
    """Add a member."""
    body = MemberIn(email=email, role=role, name=name, password=password)  # type: ignore[arg-type]
    emit(run_with_db(lambda db, acc: uc.add_member(db, acc, body), account))


@members_cli.command("set-role")
def set_role(member_id: int, role: str, account: int | None = AccountOpt) -> None:
    """Change a member's role (owner, admin, viewer)."""
    body = MemberPatch(role=role)  # type: ignore[arg-type]
    emit(run_with_db(lambda db, acc: uc.update_member(db, acc, member_id, body), account))


@members_cli.command("remove")
def remove(member_id: int, account: int | None = AccountOpt) -> None:
    """Remove a member (the last owner stays)."""
    run_with_db(lambda db, acc: uc.remove_member(db, acc, member_id), account)
    typer.echo(f"removed member {member_id}", err=True)
