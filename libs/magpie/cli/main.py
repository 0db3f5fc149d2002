"""The `magpie` command."""
from __future__ import annotations

import typer

from magpie.cli.analytics import analytics_cli
from magpie.cli.apps import apps_cli, keys_cli
from magpie.cli.members import members_cli
from magpie.cli.projection import projection_cli
from magpie.cli.reindex import reindex
from magpie.cli.run import run
from magpie.cli.schema import schema_cli
from magpie.cli.sftp import sftp_cli
from magpie.demo import demo

app = typer.Typer(
    help="Magpie: self-hosted visual search for e-commerce. Every command reads the same "
    "MAGPIE_* settings as the server (MAGPIE_DATA_DIR, MAGPIE_DATABASE_URL, ...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(schema_cli, name="schema")
app.add_typer(members_cli, name="members")
app.add_typer(analytics_cli, name="analytics")
app.add_typer(sftp_cli, name="sftp")
app.add_typer(projection_cli, name="projection")
app.command("reindex")(reindex)
app.command("demo")(demo)
app.command("run")(run)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Overrides MAGPIE_HOST (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Overrides MAGPIE_PORT (default 8080)."),
) -> None:
    """Run the standalone service: every Magpie service in one process, embedded engines."""
    import uvicorn

    from magpie.common.logging import configure_logging
    from magpie.common.settings import Settings
    from magpie.gateway.app import create_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                proxy_headers=True)


@app.command("export-schemas")
def export_schemas(out: str = typer.Option("schemas", help="Target folder.")) -> None:
    """Write the JSON Schema of every bus event into OUT (what `make schemas` runs)."""
    from pathlib import Path

    from magpie.common.events.export import write_schemas

    for path in write_schemas(Path(out)):
        typer.echo(path)


if __name__ == "__main__":
    app()
