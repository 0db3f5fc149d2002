"""`magpie schema`: show and set an application's metadata schema."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from magpie.cli.context import AccountOpt, emit, run_with_db
from magpie.common.controlplane.schema_rules import RECOMMENDED_FIELDS
from magpie.common.errors import InvalidRequest
from magpie.gateway.api.schemas import FieldIn
from magpie.gateway.controlplane import schema as uc

schema_cli = typer.Typer(help="Show and set an application's schema.", no_args_is_help=True)


def parse_field(spec: str) -> FieldIn:
    """Parse `name:type[:searchable]`, e.g. `price:float:searchable`."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "searchable"):
        raise typer.BadParameter(f"'{spec}': expected name:type or name:type:searchable")
    return FieldIn(name=parts[0], type=parts[1], searchable=len(parts) == 3)


@schema_cli.command("show")
def show(app_id: str, account: int | None = AccountOpt) -> None:
    """Print the schema as JSON."""
    emit(run_with_db(lambda db, acc: uc.get_schema(db, acc, app_id), account))


@schema_cli.command("set")
def set_(
    app_id: str,
    field: list[str] = typer.Option([], "--field", "-f", help="name:type[:searchable]; repeat."),
    file: Path | None = typer.Option(None, "--file", help='JSON file: {"fields": [{"name","type","searchable"}]}'),
    preset: bool = typer.Option(False, "--preset", help="Start from the recommended fields."),
    account: int | None = AccountOpt,
) -> None:
    """Replace the schema. Fields left out lose their data; a bad schema changes nothing."""
    fields: list[FieldIn] = []
    if preset:
        fields += [FieldIn(name=f.name, type=f.type, searchable=f.searchable) for f in RECOMMENDED_FIELDS]
    if file is not None:
        try:
            fields += [FieldIn.model_validate(f) for f in json.loads(file.read_text())["fields"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(f"{file}: {exc}") from None
    fields += [parse_field(f) for f in field]
    if not fields:
        raise typer.BadParameter("give --field, --file or --preset")
    try:
        emit(run_with_db(lambda db, acc: uc.set_schema(db, acc, app_id, fields), account))
    except InvalidRequest as exc:  # pragma: no cover - run_with_db already maps typed errors
        raise typer.BadParameter(exc.detail) from None
