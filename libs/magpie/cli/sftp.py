"""`magpie sftp`: SFTP accounts for the recurring datafeed, feeds, and the server in its own process."""
from __future__ import annotations

from pathlib import Path

import typer

from magpie.cli.context import AccountOpt, emit, run_with_db
from magpie.common.settings import Settings
from magpie.gateway.controlplane import apps
from magpie.ingestion.sftp import accounts, results
from magpie.ingestion.sftp import feed as feeds

sftp_cli = typer.Typer(help="SFTP datafeed: accounts (password and SSH keys), feeds, server.",
                       no_args_is_help=True)
AppOpt = typer.Option(..., "--app", help="Application id.")


def _where() -> tuple[str, int, Path]:
    s = Settings()
    return (*s.sftp_address(), s.data_dir / "sftp")


def _with_app(app_id: str, account: int | None, fn):  # noqa: ANN001, ANN202
    """Run `fn(db)` once the application is known to belong to the account."""

    async def _run(db, acc):  # noqa: ANN001, ANN202
        await apps.show_app(db, acc, app_id)
        return await fn(db)

    return run_with_db(_run, account)


@sftp_cli.command("create-user")
def create_user(app: str = AppOpt, username: str | None = typer.Option(None, help="Default: the app id."),
                account: int | None = AccountOpt) -> None:
    """Create the application's SFTP account; prints the password once, and the names to use."""
    host, port, root = _where()

    async def _do(db):  # noqa: ANN001, ANN202
        _, password = await accounts.create_user(db, app, username)
        accounts.app_folder(root, app)
        return {**await accounts.describe(db, app, host, port), "password": password}

    emit(_with_app(app, account, _do))


@sftp_cli.command("rotate-password")
def rotate_password(app: str = AppOpt, account: int | None = AccountOpt) -> None:
    """Give the account a new password (the old one stops working at once); prints it once."""
    host, port, _ = _where()

    async def _do(db):  # noqa: ANN001, ANN202
        _, password = await accounts.rotate_password(db, app)
        return {**await accounts.describe(db, app, host, port), "password": password}

    emit(_with_app(app, account, _do))


@sftp_cli.command("add-key")
def add_key(app: str = AppOpt, key: str | None = typer.Option(None, "--key", help="'ssh-ed25519 AAAA...'"),
            key_file: Path | None = typer.Option(None, "--key-file", help="A .pub file."),
            account: int | None = AccountOpt) -> None:
    """Allow an SSH public key to log in as the application's account."""
    if (key is None) == (key_file is None):
        raise typer.BadParameter("Give exactly one of --key and --key-file.")
    text = key if key is not None else key_file.read_text()  # type: ignore[union-attr]

    async def _do(db):  # noqa: ANN001, ANN202
        row = await accounts.add_key(db, app, text)
        return {"fingerprint": row.fingerprint, "algorithm": row.algorithm, "comment": row.comment}

    emit(_with_app(app, account, _do))


@sftp_cli.command("remove-key")
def remove_key(fingerprint: str, app: str = AppOpt, account: int | None = AccountOpt) -> None:
    """Stop a key (by its SHA256 fingerprint, as `show` lists it) from logging in."""
    _with_app(app, account, lambda db: accounts.remove_key(db, app, fingerprint))
    typer.echo(f"removed {fingerprint}", err=True)


@sftp_cli.command("show")
def show(app: str = AppOpt, account: int | None = AccountOpt) -> None:
    """Host, port, user name, keys and the exact file names to upload for each mode."""
    host, port, _ = _where()
    emit(_with_app(app, account, lambda db: accounts.describe(db, app, host, port)))


@sftp_cli.command("feeds")
def list_feeds(app: str = AppOpt, limit: int = typer.Option(20, "--limit"),
               account: int | None = AccountOpt) -> None:
    """The application's latest feeds with their state, trans_id and counts."""
    from magpie.ingestion.store import IngestStore

    async def _do(db):  # noqa: ANN001, ANN202
        deps = _ingest(IngestStore(db))
        return [results.feed_out(f) for f in await feeds.list_feeds(deps, app, limit)]

    emit(_with_app(app, account, _do))


@sftp_cli.command("force")
def force(feed_id: str, app: str = AppOpt, account: int | None = AccountOpt) -> None:
    """Apply a FULL feed the safety guard refused (the running server picks it up within seconds)."""
    from magpie.ingestion.store import IngestStore

    _, _, root = _where()

    async def _do(db):  # noqa: ANN001, ANN202
        deps = feeds.FeedDeps(ingest=_ingest(IngestStore(db)), root=root)
        return results.feed_out(await feeds.force(deps, app, feed_id))

    emit(_with_app(app, account, _do))


def _ingest(store):  # noqa: ANN001, ANN202
    """Ingestion deps for reads and state changes that publish nothing."""
    from magpie.ingestion.service import IngestDeps

    return IngestDeps(store=store, bus=None, schemas=None)  # type: ignore[arg-type]


@sftp_cli.command("serve")
def serve() -> None:
    """Run the SFTP server, watcher and feed runner alone (distributed mode; MAGPIE_BUS=kafka)."""
    import asyncio

    from magpie.common.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import asyncio
    import signal

    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.gateway.bootstrap import build_bus, open_control_plane
    from magpie.ingestion.service import IngestDeps
    from magpie.ingestion.sftp.server import start
    from magpie.ingestion.store import IngestStore

    engine, db = await open_control_plane(settings)
    bus = build_bus(settings)  # publishes only: item outcomes are recorded by the ingestion service
    await bus.start()
    service = await start(settings, IngestDeps(store=IngestStore(db), bus=bus, schemas=SchemaProvider(db)), db)
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await service.stop()
        await bus.stop()
        await engine.dispose()
