"""`magpie analytics`: reports, raw-event exports and usage, read from the analytics store.

With the embedded store (chdb) one process at a time may open it: stop `magpie serve`
first, or ask the running server (GET /v1/analytics/report, /admin/v1/apps/{id}/analytics/...).
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import typer

from magpie.cli.context import AccountOpt, emit, run_with_db

T = TypeVar("T")
analytics_cli = typer.Typer(help="Analytics reports, raw-event exports (CSV, Parquet) and usage.",
                            no_args_is_help=True)
AppOpt = typer.Option(..., "--app", help="Application id.")
FromOpt = typer.Option(None, "--from", help="First UTC day, YYYY-MM-DD (default: 29 days before --to).")
ToOpt = typer.Option(None, "--to", help="Last UTC day, included, YYYY-MM-DD (default: today).")


def _days(date_from: str | None, date_to: str | None) -> tuple[date, date]:
    from magpie.common.errors import InvalidRequest
    from magpie.gateway.api.reports import date_range

    try:
        parsed = [date.fromisoformat(d) if d else None for d in (date_from, date_to)]
    except ValueError:
        raise InvalidRequest("Dates are written YYYY-MM-DD.") from None
    return date_range(parsed[0], parsed[1])


def run_with_store(app_id: str, account: int | None, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Check the application is the account's, open the analytics store, run `fn(store)`."""

    async def _main(db: Any, account_id: int) -> T:
        from magpie.analytics.bootstrap import build_analytics_store
        from magpie.common.settings import Settings
        from magpie.gateway.controlplane.apps import get_app

        async with db() as s:
            await get_app(s, account_id, app_id)
        store = build_analytics_store(Settings())
        await store.start()
        try:
            return await fn(store)
        finally:
            await store.stop()

    return run_with_db(_main, account)


@analytics_cli.command("report")
def report(
    app: str = AppOpt, date_from: str | None = FromOpt, date_to: str | None = ToOpt,
    solution: str = typer.Option("", "--solution", help="A search method or widget; default all."),
    top: int = typer.Option(10, "--top", min=1, max=100, help="How many top clicked products."),
    account: int | None = AccountOpt,
) -> None:
    """Print an application's report as JSON (formulas: magpie.analytics.reports)."""
    from magpie.analytics import reports
    from magpie.common.ports.analytics import ReportQuery

    def _go(store: Any) -> Awaitable[dict[str, Any]]:
        days = _days(date_from, date_to)
        return reports.report(store, ReportQuery(app, days[0], days[1], solution), top)

    emit(run_with_store(app, account, _go))


@analytics_cli.command("usage")
def usage(app: str = AppOpt, date_from: str | None = FromOpt, date_to: str | None = ToOpt,
          account: int | None = AccountOpt) -> None:
    """Print an application's usage statistics as JSON."""
    from magpie.analytics import reports

    emit(run_with_store(app, account, lambda store: reports.usage(store, app, *_days(date_from, date_to))))


@analytics_cli.command("export")
def export(
    app: str = AppOpt, date_from: str | None = FromOpt, date_to: str | None = ToOpt,
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    out: Path | None = typer.Option(None, "--out", help="Target file (default: standard output)."),
    account: int | None = AccountOpt,
) -> None:
    """Write an application's raw tracked events (deduplicated) as CSV or Parquet."""
    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("--format is csv or parquet")
    if out is None and fmt == "parquet" and sys.stdout.isatty():
        raise typer.BadParameter("Parquet is binary: give --out FILE or redirect the output")

    async def _go(store: Any) -> int:
        days = _days(date_from, date_to)
        sink = out.open("wb") if out else sys.stdout.buffer
        written = 0
        try:
            async for chunk in store.export_events(app, days[0], days[1], fmt):
                await asyncio.to_thread(sink.write, chunk)
                written += len(chunk)
        finally:
            sink.flush()
            if out:
                sink.close()
        return written

    written = run_with_store(app, account, _go)
    if out:
        typer.echo(f"wrote {written} bytes to {out}", err=True)
