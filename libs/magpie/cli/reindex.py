"""`magpie reindex`: re-embed an application's items after the model setting changed."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from magpie.cli.context import emit, run_with_db
from magpie.common.errors import MagpieError


class _Bars:
    """Reindex progress as rich bars on stderr, one per phase."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: Any = None

    def phase(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


class _Speed(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:6.1f} items/s", style="progress.data.speed")


class IndexInUse(MagpieError):
    """The index is open in another process: the server is running."""

    code, message, http_status = 409, "Index in use.", 409


class ModelUnavailable(MagpieError):
    """The model the settings name cannot be loaded."""

    code, message, http_status = 500, "Model unavailable.", 500


def reindex(
    app_id: str = typer.Option(..., "--app", help="Application id (app_...)."),
    force: bool = typer.Option(False, "--force", help="Also redo items already on the model."),
    page: int = typer.Option(64, "--page", min=1, help="Items read and embedded per step."),
    colors: bool = typer.Option(False, "--colors", help="Instead: extract the dominant colours "
                                "of items indexed without them and fill colour search."),
) -> None:
    """Re-embed every indexed item of an application from its stored image with the model
    the settings name now (MAGPIE_EMBEDDING_MODEL / MAGPIE_EMBEDDING_MODELS). Stop the
    server first. Safe to re-run: items already on the model are skipped. With --colors,
    backfill colour search instead (items that have their colours are skipped)."""
    if colors:
        filled = run_with_db(lambda db, _account: _run_colors(db, app_id))
        emit({"app_id": filled.app_id, "total": filled.total, "extracted": filled.extracted,
              "added": filled.added, "skipped": filled.skipped,
              "failed": [{"im_name": name, "error": why} for name, why in filled.failed]})
        if filled.failed:
            raise typer.Exit(1)
        return
    result = run_with_db(lambda db, _account: _run(db, app_id, force, page))
    emit({"app_id": result.app_id, "model": result.model, "total": result.total,
          "embedded": result.embedded, "cached": result.cached, "skipped": result.skipped,
          "rebuilt": result.rebuilt,
          "failed": [{"im_name": name, "error": why} for name, why in result.failed]})
    if result.failed:
        raise typer.Exit(1)


@asynccontextmanager
async def offline_engines(app_id: str) -> AsyncIterator[tuple[Any, Any, Any]]:
    """The settings, object store and index a server-stopped command works on; IndexInUse
    while the server holds the application's index."""
    from magpie.common.settings import Settings
    from magpie.gateway.bootstrap import build_object_store
    from magpie.search.bootstrap import build_index

    settings = Settings()  # the same MAGPIE_* settings, hence the same folders, as the server
    objects, index = build_object_store(settings), build_index(settings)
    await objects.start()
    await index.start()
    try:
        await _open_index(index, app_id)  # before any model loads: fail fast if the server runs
        yield settings, objects, index
    finally:
        await index.stop()
        await objects.stop()


async def _run(db, app_id: str, force: bool, page: int):  # noqa: ANN001, ANN202 - ReindexResult
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.embedding.reindex import ReindexDeps
    from magpie.ingestion.store import IngestStore

    schema = await SchemaProvider(db).get(app_id)
    async with offline_engines(app_id) as (settings, objects, index):
        # The application's model as its searches see it: through its projection, if fitted.
        models, model = await load_model(settings, schema.image_type, app_id, objects)
        try:
            deps = ReindexDeps(index=index, objects=objects, model=model, schema=schema,
                               names=lambda: IngestStore(db).catalog_names(app_id))
            return await reindex_with_bars(app_id, deps, force, page)
        finally:
            await models.close()


async def _run_colors(db, app_id: str):  # noqa: ANN001, ANN202 - BackfillResult
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.common.events.control import FieldSpec
    from magpie.search.color_backfill import backfill_colors

    schema = await SchemaProvider(db).get(app_id)
    specs = [FieldSpec(name=f.name, type=f.type, searchable=f.searchable) for f in schema.fields]
    async with offline_engines(app_id) as (_, objects, index):
        with progress_bars() as progress:
            return await backfill_colors(app_id, index, objects, specs, progress=_Bars(progress))


async def _open_index(index, app_id: str) -> None:  # noqa: ANN001
    try:
        await index.count(app_id)
    except Exception as exc:
        if "WouldBlock" in str(exc):  # qdrant-edge: another process holds the shard's WAL
            raise IndexInUse("The index is open in another process: stop `magpie serve` "
                             "first, then run reindex again.") from None
        raise


async def load_model(settings, image_type: str, app_id: str | None = None,  # noqa: ANN001, ANN201
                     objects=None):  # noqa: ANN001 - (Models, ModelHandle)
    """The raw model of `image_type`, or with `app_id` (and its object store) the model
    that application's vectors come from, projection included."""
    from magpie.embedding.bootstrap import Models

    try:
        models = Models(settings, objects=objects)
        return models, (await models.for_app(app_id, image_type) if app_id else await models.for_type(image_type))
    except (ImportError, ValueError) as exc:  # a bad spec, or weights that are not installed
        raise ModelUnavailable(f"Cannot load the embedding model: {exc}") from None


def progress_bars() -> Progress:
    """Rich bars on stderr: count, items/s, elapsed and remaining time."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Speed(),
               TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True))


async def reindex_with_bars(app_id: str, deps, force: bool, page: int):  # noqa: ANN001, ANN201
    """Reindex `app_id` with `deps`, drawing its phases as bars."""
    from magpie.embedding.reindex import reindex as reindex_app

    with progress_bars() as progress:
        return await reindex_app(app_id, deps, force=force, page=page, progress=_Bars(progress))


cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
cli.command()(reindex)

if __name__ == "__main__":
    cli()
