"""`magpie projection`: fit, show or drop an application's catalog projection (learned
whitening), and move its index over. Run with the server stopped, like `magpie reindex`."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import typer

from magpie.cli.context import emit, run_with_db
from magpie.cli.reindex import load_model, offline_engines, progress_bars, reindex_with_bars
from magpie.common.errors import MagpieError

projection_cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                             help="Fit an application's catalog projection (better photo-like "
                                  "recall), show it, or drop it. Stop the server first.")
AppOpt = typer.Option(..., "--app", help="Application id (app_...).")


class CatalogTooSmall(MagpieError):
    """The catalog cannot fit a projection."""

    code, message, http_status = 400, "Catalog too small.", 400


@projection_cli.command("fit")
def fit(app: str = AppOpt,
        views: int = typer.Option(4, "--views", min=1, max=16,
                                  help="Synthetic views of each catalog image (crop, rotation, "
                                       "background, blur, colour, JPEG)."),
        dims: int = typer.Option(1024, "--dims", min=8, help="Dimensions kept."),
        sample: int = typer.Option(2000, "--sample", min=1, help="Catalog images read at most."),
        seed: int = typer.Option(0, "--seed", help="Seed of the synthetic views.")) -> None:
    """Fit a learned whitening on the application's own stored catalog images (never on
    queries), store it, and re-embed the index through it. Needs at least 200 indexed items.
    Searches and new items then use it; `drop` undoes it."""
    emit(run_with_db(lambda db, _account: _fit(db, app, views, dims, sample, seed)))


@projection_cli.command("show")
def show(app: str = AppOpt) -> None:
    """Whether the application has a projection for its current model, and its shape."""
    emit(run_with_db(lambda db, _account: _show(db, app)))


@projection_cli.command("drop")
def drop(app: str = AppOpt) -> None:
    """Remove the application's projection, move its index back to the raw model, and keep
    the server from fitting it again on its own (until `fit`)."""
    emit(run_with_db(lambda db, _account: _drop(db, app)))


@asynccontextmanager
async def _app_model(db, app_id: str) -> AsyncIterator[tuple[Any, Any, Any]]:  # noqa: ANN001
    """The application's schema, its image type's raw model and reindex deps around it, on
    the engines of a server-stopped command."""
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.embedding.reindex import ReindexDeps
    from magpie.ingestion.store import IngestStore

    schema = await SchemaProvider(db).get(app_id)
    async with offline_engines(app_id) as (settings, objects, index):
        models, base = await load_model(settings, schema.image_type)
        try:
            yield models, base, ReindexDeps(index=index, objects=objects, model=base, schema=schema,
                                            names=lambda: IngestStore(db).catalog_names(app_id))
        finally:
            await models.close()


async def _fit(db, app_id: str, views: int, dims: int, sample: int, seed: int) -> dict:  # noqa: ANN001
    from dataclasses import replace

    from magpie.embedding.app_projection import fit_app_projection, off_key, projected
    from magpie.embedding.projection import ProjectionError

    async with _app_model(db, app_id) as (models, base, deps):
        raw = models.registry.get(deps.schema.image_type)
        with progress_bars() as progress:
            task = progress.add_task(f"fitting ({views} views per image)", total=1)
            try:
                fitted = await fit_app_projection(app_id, deps, raw.embed, sample=sample,
                                                  views_per_image=views, dims=dims, seed=seed)
            except ProjectionError as exc:
                raise CatalogTooSmall(str(exc)) from None
            progress.advance(task)
        result = await reindex_with_bars(app_id, replace(deps, model=projected(base, fitted)), False, 64)
        await deps.objects.delete(off_key(app_id))  # the server may refit it as it grows
    return {"app_id": app_id, "projection": fitted.digest, "kind": fitted.kind, "dim": fitted.dim,
            "model": result.model, "total": result.total, "embedded": result.embedded,
            "cached": result.cached, "rebuilt": result.rebuilt,
            "failed": [{"im_name": n, "error": why} for n, why in result.failed]}


async def _show(db, app_id: str) -> dict:  # noqa: ANN001
    from magpie.embedding.app_projection import projection_key, projection_status

    async with _app_model(db, app_id) as (_, base, deps):
        shown = await projection_status(deps.objects, app_id, base)
    if shown["projection"] is not None:
        shown["projection"]["key"] = projection_key(app_id, base)
    return shown


async def _drop(db, app_id: str) -> dict:  # noqa: ANN001
    from magpie.embedding.app_projection import delete_projection, off_key

    async with _app_model(db, app_id) as (_, base, deps):
        existed = await delete_projection(deps.objects, app_id, base)
        # Kept off: the running server would otherwise fit it again (MAGPIE_AUTO_PROJECTION).
        await deps.objects.put(off_key(app_id), b"off", "text/plain")
        # Back to the raw model: raw vectors come from the vector cache, no model run.
        result = await reindex_with_bars(app_id, deps, False, 64)
    return {"app_id": app_id, "dropped": existed, "model": result.model, "total": result.total,
            "rebuilt": result.rebuilt,
            "failed": [{"im_name": n, "error": why} for n, why in result.failed]}
