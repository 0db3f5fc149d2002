"""`magpie projection`: fit, show or drop an application's catalog projection (learned
whitening), and move its index over. Run with the server stopped, like `magpie reindex`."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from magpie.cli.context import emit, run_with_db
from magpie.cli.reindex import _load_model, _open_index, _with_bars
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
    """Remove the application's projection and move its index back to the raw model."""
    emit(run_with_db(lambda db, _account: _drop(db, app)))


class _Opened:
    """The index, object store and models of one offline projection command."""

    async def __aenter__(self):  # noqa: ANN204
        from magpie.common.settings import Settings
        from magpie.gateway.bootstrap import build_object_store
        from magpie.search.bootstrap import build_index

        self.settings = Settings()  # the same MAGPIE_* settings, hence folders, as the server
        self.objects, self.index = build_object_store(self.settings), build_index(self.settings)
        self.models = None
        await self.objects.start()
        await self.index.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.models is not None:
            await self.models.close()
        await self.index.stop()
        await self.objects.stop()


async def _context(db, app_id: str, o: _Opened):  # noqa: ANN001, ANN202 - (schema, base handle, deps)
    from magpie.common.controlplane.schema_provider import SchemaProvider
    from magpie.embedding.reindex import ReindexDeps
    from magpie.ingestion.store import IngestStore

    schema = await SchemaProvider(db).get(app_id)
    await _open_index(o.index, app_id)  # before loading the model: fail fast if the server runs
    o.models, base = await _load_model(o.settings, schema.image_type)
    deps = ReindexDeps(index=o.index, objects=o.objects, model=base, schema=schema,
                       names=lambda: IngestStore(db).catalog_names(app_id))
    return schema, base, deps


async def _fit(db, app_id: str, views: int, dims: int, sample: int, seed: int) -> dict:  # noqa: ANN001
    from dataclasses import replace

    from magpie.embedding.app_projection import fit_app_projection, projected
    from magpie.embedding.projection import ProjectionError

    async with _Opened() as o:
        schema, base, deps = await _context(db, app_id, o)
        raw = o.models.registry.get(schema.image_type)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=Console(stderr=True)) as progress:
            task = progress.add_task(f"fitting ({views} views per image)", total=1)
            try:
                fitted = await fit_app_projection(app_id, deps, raw.embed, sample=sample,
                                                  views_per_image=views, dims=dims, seed=seed)
            except ProjectionError as exc:
                raise CatalogTooSmall(str(exc)) from None
            progress.advance(task)
        result = await _with_bars(app_id, replace(deps, model=projected(base, fitted)), False, 64)
    return {"app_id": app_id, "projection": fitted.digest, "kind": fitted.kind, "dim": fitted.dim,
            "model": result.model, "total": result.total, "embedded": result.embedded,
            "cached": result.cached, "rebuilt": result.rebuilt,
            "failed": [{"im_name": n, "error": why} for n, why in result.failed]}


async def _show(db, app_id: str) -> dict:  # noqa: ANN001
    from magpie.embedding.app_projection import load_projection, projection_key

    async with _Opened() as o:
        _, base, _ = await _context(db, app_id, o)
        found = await load_projection(o.objects, app_id, base)
    return {"app_id": app_id, "model": f"{base.name}@{base.version}",
            "projection": None if found is None else {
                "digest": found.digest, "kind": found.kind, "dim": found.dim,
                "key": projection_key(app_id, base)}}


async def _drop(db, app_id: str) -> dict:  # noqa: ANN001
    from magpie.embedding.app_projection import projection_key

    async with _Opened() as o:
        _, base, deps = await _context(db, app_id, o)
        existed = await o.objects.exists(projection_key(app_id, base))
        if existed:
            await o.objects.delete(projection_key(app_id, base))
        # Back to the raw model: raw vectors come from the vector cache, no model run.
        result = await _with_bars(app_id, deps, False, 64)
    return {"app_id": app_id, "dropped": existed, "model": result.model, "total": result.total,
            "rebuilt": result.rebuilt,
            "failed": [{"im_name": n, "error": why} for n, why in result.failed]}
