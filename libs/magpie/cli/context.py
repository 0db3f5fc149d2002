"""What CLI commands share: settings, an open control plane, JSON output, error exits."""
from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from magpie.common.controlplane.tables import Account
from magpie.common.errors import MagpieError
from magpie.common.settings import Settings

T = TypeVar("T")


def run_with_db(fn: Callable[[async_sessionmaker, int], Awaitable[T]], account: int | None = None) -> T:
    """Open the store named by the settings, run `fn(db, account_id)`, close the store.

    Typed errors end the command with exit code 1 and the error's message on stderr.
    """

    async def _main() -> T:
        from magpie.gateway.bootstrap import open_control_plane
        from magpie.gateway.controlplane.members import ensure_initial_owner

        settings = Settings()
        engine, db = await open_control_plane(settings)
        try:
            password = await ensure_initial_owner(
                db, settings.admin_email,
                settings.admin_password.get_secret_value() if settings.admin_password else None)
            if password:
                typer.echo(f"Initial owner {settings.admin_email} created; password: {password}", err=True)
            async with db() as s:
                account_id = account or await s.scalar(select(Account.id).order_by(Account.id).limit(1))
            return await fn(db, account_id)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except MagpieError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def emit(value: Any) -> None:
    """Print a result as indented JSON (pydantic models and lists of them included)."""
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


AccountOpt = typer.Option(None, "--account", help="Account id (default: the first account).")
