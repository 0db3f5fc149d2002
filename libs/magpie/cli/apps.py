"""`magpie apps` and `magpie keys`: applications and their key sets."""
from __future__ import annotations

import typer

from magpie.cli.context import AccountOpt, emit, run_with_db
from magpie.common.image_types import IMAGE_TYPES
from magpie.gateway.api.schemas import AppIn
from magpie.gateway.controlplane import apps as uc

apps_cli = typer.Typer(help="Create, list, rename and delete applications (one catalog each).",
                       no_args_is_help=True)
keys_cli = typer.Typer(help="List, create and revoke an application's keys.", no_args_is_help=True)


@apps_cli.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Application name."),
    image_type: str = typer.Option("general", "--image-type", help=f"One of: {', '.join(IMAGE_TYPES)}."),
    account: int | None = AccountOpt,
) -> None:
    """Create an application; prints app_id, access_key, secret_key (shown once) and app_key."""
    emit(run_with_db(lambda db, acc: uc.create_app(db, acc, AppIn(name=name, image_type=image_type)), account))


@apps_cli.command("list")
def list_(account: int | None = AccountOpt) -> None:
    """List applications."""
    emit(run_with_db(uc.list_apps, account))


@apps_cli.command("rename")
def rename(app_id: str, name: str = typer.Option(..., "--name"), account: int | None = AccountOpt) -> None:
    """Rename an application."""
    emit(run_with_db(lambda db, acc: uc.rename_app(db, acc, app_id, name), account))


@apps_cli.command("delete")
def delete(
    app_id: str,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    account: int | None = AccountOpt,
) -> None:
    """Delete an application with its index, images and data (cannot be undone)."""
    if not yes:
        typer.confirm(f"Delete {app_id} and all of its data?", abort=True)
    run_with_db(lambda db, acc: uc.delete_app(db, acc, app_id), account)
    typer.echo(f"deleted {app_id}", err=True)


@keys_cli.command("list")
def keys_list(app_id: str, account: int | None = AccountOpt) -> None:
    """List an application's keys (secrets are never shown again)."""
    emit(run_with_db(lambda db, acc: uc.list_keys(db, acc, app_id), account))


@keys_cli.command("create")
def keys_create(app_id: str, label: str = typer.Option("", "--label"), account: int | None = AccountOpt) -> None:
    """Create a key set (at most 10 live); prints the secret once."""
    emit(run_with_db(lambda db, acc: uc.create_key(db, acc, app_id, label), account))


@keys_cli.command("revoke")
def keys_revoke(app_id: str, access_key: str, account: int | None = AccountOpt) -> None:
    """Revoke a key set at once."""
    emit(run_with_db(lambda db, acc: uc.revoke_key(db, acc, app_id, access_key), account))
