"""The blocking side of the qdrant-edge index: shard files, generations, payload indexes.

Every function here runs in a worker thread (or at start-up): opening, creating, copying,
adopting and retiring shard generations under `root/<app_id>/`, and the payload-index
operations a schema asks for. `magpie.search.index.edge` holds the async side.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from magpie.search.index import IM_NAME, check_vector, point_id

META, SHARD_PREFIX = "meta.json", "shard-"


def _qe() -> Any:
    import qdrant_edge  # on first use only: a native library

    return qdrant_edge


# Blocking helpers, run in threads.

def _open(path: Path) -> tuple[dict[str, Any], Any] | None:
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        return None
    current = SHARD_PREFIX + meta["generation"]
    for stale in path.glob(SHARD_PREFIX + "*"):  # an optimisation that a crash cut short
        if stale.name != current:
            shutil.rmtree(stale, ignore_errors=True)
    return meta, _qe().EdgeShard.load(str(path / current))


def _create(path: Path, meta: dict[str, Any], threshold_kb: int) -> Any:
    shutil.rmtree(path, ignore_errors=True)  # a folder without meta.json is a failed create
    shard = _create_shard(path / (SHARD_PREFIX + meta["generation"]), meta["dim"], threshold_kb)
    _write_meta(path, meta)
    return shard


def _create_shard(path: Path, dim: int, threshold_kb: int) -> Any:
    qe = _qe()
    config = qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
        # prevent_unoptimized would hide fresh points until optimised: never wanted here.
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=threshold_kb, prevent_unoptimized=False),
    )
    return qe.EdgeShard.create(str(path), config)


def _payload_indexes(shard: Any) -> dict[str, str]:
    """The shard's payload indexes: field name -> kind ("keyword", "integer", ...)."""
    return {name: str(i.data_type).rsplit(".", 1)[-1].lower()
            for name, i in shard.info().payload_schema.items()}


def _point_structs(qe: Any, app_id: str, points: Any, dim: int) -> list[Any]:
    """Engine points of `points` (IndexPoints): the id from `im_name`, kept in the payload;
    vectors checked against the shard's dimension."""
    return [qe.Point(point_id(app_id, p.im_name), check_vector(p.vector, dim, app_id),
                     {**p.payload, IM_NAME: p.im_name}) for p in points]


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path / (META + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path / META)  # atomic: a crash leaves the old generation or the new


def _apply(shard: Any, make_ops: Callable[[Any], list[Any]], flush: bool) -> list[Any]:
    ops = make_ops(shard)
    for op in ops:
        shard.update(op)
    if flush:
        shard.flush()
    return ops


def _copy_shard(shard: Any, src: Path, dst: Path) -> None:
    # Flushed first so that the copy is a clean shard, not a crash image for the WAL to mend
    # (a short flush: writes flush every FLUSH_EVERY points).
    shard.flush()
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def _adopt(path: Path, journal: list[Any]) -> Any:
    # No flush here or below: each flush holds the GIL (0.1-0.3 s at 20k points), and the
    # WAL already makes the replayed writes durable.
    shard = _qe().EdgeShard.load(str(path))
    for op in journal:
        shard.update(op)
    return shard


def _retire(old: Any, path: Path, meta: dict[str, Any], src: Path) -> None:
    _write_meta(path, meta)  # the new generation is the current one from here on
    old.close()
    shutil.rmtree(src, ignore_errors=True)


def _close_shard(shard: Any) -> None:
    shard.flush()
    shard.close()


def _discard(shard: Any, path: Path) -> None:
    shard.close()
    shutil.rmtree(path, ignore_errors=True)


def _index_ops(qe: Any, shard: Any, wanted: dict[str, str]) -> list[Any]:
    have = _payload_indexes(shard)
    params = {
        "keyword": qe.KeywordIndexParams, "float": qe.FloatIndexParams,
        "integer": lambda: qe.IntegerIndexParams(lookup=True, range=True),
        "text": lambda: qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True),
    }
    drop = [qe.UpdateOperation.delete_field_index(n) for n, k in have.items() if wanted.get(n) != k]
    return drop + [qe.UpdateOperation.create_field_index(n, params[k]())
                   for n, k in wanted.items() if have.get(n) != k]
