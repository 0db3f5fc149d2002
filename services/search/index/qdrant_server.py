"""The vector index on a Qdrant server or cluster, through qdrant-client's async API.

One collection per application, `magpie_<app_id>`, with the ids, payload indexes and filter
translation of the embedded index (all from `magpie.search.index`). The schema's field types,
which filter translation needs, live in the collection's metadata, so every replica of the
search service reads the same ones. The tests use qdrant-client's local mode (`:memory:` or
`path=`), a pure-Python emulation, as the stand-in for a server.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from magpie.common.errors import Conflict, IndexModelMismatch, InvalidRequest, NotFound, Unavailable
from magpie.common.events.control import FieldSpec
from magpie.common.filters import Filter
from magpie.common.ports.index import FacetCount, Hit, IndexPoint, ScrollPage
from magpie.search.index import (
    IM_NAME, build_filter, check_app_id, check_vector, facet_counts, named, plan_filter,
    point_id, scroll_offset, wanted_indexes,
)

T = TypeVar("T")
UPSERT_CHUNK = 256  # points per request: bounded bodies, and progress on large batches
SCHEMA_TTL_S = 60.0  # another replica may change the schema; re-read it this often
_RAISE: Any = object()


class QdrantServerIndex:
    """VectorIndex on Qdrant through `AsyncQdrantClient`.

    `url` reaches a server; `path` (a folder) or neither (in memory) selects qdrant-client's
    local mode; `client_factory` builds any client, for tests and custom settings.
    """

    def __init__(
        self, url: str | None = None, *, path: str | None = None, api_key: str | None = None,
        timeout: int = 30, prefix: str = "magpie_",
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._url, self._path, self._api_key, self._timeout = url, path, api_key, timeout
        self._prefix, self._factory = prefix, client_factory
        self._client: Any = None
        # app_id: (when read, dim, field types)
        self._schemas: dict[str, tuple[float, int, dict[str, str]]] = {}

    async def start(self) -> None:
        """Create the client (a server is first contacted by the first call)."""
        from qdrant_client import AsyncQdrantClient

        if self._factory is not None:
            self._client = self._factory()
        elif self._url is not None:
            self._client = AsyncQdrantClient(url=self._url, api_key=self._api_key,
                                             timeout=self._timeout, check_compatibility=False)
        elif self._path is not None:
            self._client = AsyncQdrantClient(path=self._path)
        else:
            self._client = AsyncQdrantClient(location=":memory:")

    async def stop(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._schemas.clear()

    async def ensure_collection(self, app_id: str, dim: int, fields: Sequence[FieldSpec]) -> None:
        """Create the collection if missing, record the field types, rebuild payload indexes."""
        from qdrant_client import models as m

        name, c = self._name(app_id), self._client
        types = {f.name: f.type for f in fields}
        # A list of pairs, not a mapping: metadata updates merge mappings key by key.
        metadata = {"magpie_dim": dim, "magpie_fields": [[k, v] for k, v in types.items()]}
        if not await self._call(c.collection_exists(name)):
            try:
                await self._call(c.create_collection(
                    name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                    metadata=metadata))
            except (Conflict, ValueError):  # local mode says ValueError
                if not await self._call(c.collection_exists(name)):
                    raise  # not another replica that created it meanwhile
        info = await self._call(c.get_collection(name))
        size = info.config.params.vectors.size
        if size != dim:
            raise IndexModelMismatch.dimensions(app_id, size, dim)
        await self._call(c.update_collection(name, metadata=metadata))
        have = {k: str(getattr(v.data_type, "value", v.data_type))
                for k, v in (info.payload_schema or {}).items()}
        wanted = wanted_indexes(fields)
        for key, kind in have.items():
            if wanted.get(key) != kind:
                await self._call(c.delete_payload_index(name, key, wait=True))
        for key, kind in wanted.items():
            if have.get(key) != kind:
                await self._call(c.create_payload_index(
                    name, key, field_schema=_schema(m, kind), wait=True))
        self._schemas[app_id] = (time.monotonic(), dim, types)

    async def upsert(self, app_id: str, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points (the id comes from `im_name`, kept in the payload)."""
        from qdrant_client import models as m

        schema = await self._schema(app_id)
        if schema is None:
            raise NotFound(f"No index for application {app_id}.")
        structs = [m.PointStruct(id=point_id(app_id, p.im_name),
                                 vector=check_vector(p.vector, schema[0], app_id),
                                 payload={**p.payload, IM_NAME: p.im_name}) for p in points]
        for i in range(0, len(structs), UPSERT_CHUNK):
            await self._call(self._client.upsert(
                self._name(app_id), points=structs[i:i + UPSERT_CHUNK], wait=True))

    async def set_payload(self, app_id: str, im_name: str, payload: dict[str, Any]) -> bool:
        """Merge `payload` into an existing point; False when the point does not exist."""
        name, pid = self._name(app_id), point_id(app_id, im_name)
        found = await self._call(
            self._client.retrieve(name, ids=[pid], with_payload=False), missing=[])
        body = {k: v for k, v in payload.items() if k != IM_NAME}
        if not found:
            return False
        if body:  # a point deleted since the lookup makes the server answer 404
            return await self._call(self._client.set_payload(
                name, payload=body, points=[pid], wait=True), missing=False) is not False
        return True

    async def delete(self, app_id: str, im_names: Sequence[str]) -> None:
        """Remove points; missing ones (and a missing collection) are ignored."""
        from qdrant_client import models as m

        if im_names:
            selector = m.PointIdsList(points=[point_id(app_id, n) for n in im_names])
            await self._call(self._client.delete(
                self._name(app_id), points_selector=selector, wait=True), missing=None)

    async def delete_payload_keys(self, app_id: str, keys: Sequence[str]) -> None:
        """Remove payload keys from every point (`im_name` stays)."""
        from qdrant_client import models as m

        keys = [k for k in keys if k != IM_NAME]
        if keys:  # an empty filter selects every point
            await self._call(self._client.delete_payload(
                self._name(app_id), keys=keys, points=m.Filter(), wait=True), missing=None)

    async def drop(self, app_id: str) -> None:
        """Delete the application's collection; a missing one is ignored."""
        self._schemas.pop(app_id, None)
        await self._call(self._client.delete_collection(self._name(app_id)), missing=None)

    async def get(self, app_id: str, im_name: str) -> IndexPoint | None:
        """One point with its vector (unit-normalised by the cosine space) and payload, or None."""
        found = await self._call(self._client.retrieve(
            self._name(app_id), ids=[point_id(app_id, im_name)],
            with_payload=True, with_vectors=True), missing=[])
        if not found:
            return None
        return IndexPoint(im_name, list(found[0].vector), dict(found[0].payload or {}))

    async def search(
        self, app_id: str, vector: Sequence[float], *, limit: int, offset: int = 0,
        filter: Filter = (), exclude: Sequence[str] = (), score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The nearest points (cosine similarity, best first) that satisfy the filter."""
        schema, flt = await self._plan(app_id, filter, exclude)
        if schema is None or limit <= 0:
            return []
        result = await self._call(self._client.query_points(
            self._name(app_id), query=check_vector(vector, schema[0], app_id), limit=limit,
            offset=max(offset, 0) or None, query_filter=flt, score_threshold=score_threshold,
            with_payload=True, with_vectors=with_vectors), missing=None)
        points = result.points if result is not None else []
        return [Hit(p.payload[IM_NAME], float(p.score), dict(p.payload),
                    list(p.vector) if with_vectors else None) for p in points]

    async def count(self, app_id: str, filter: Filter = (), exclude: Sequence[str] = ()) -> int:
        """How many points satisfy the filter, the excluded ones left out (see `named`)."""
        from qdrant_client import models as m

        schema = await self._schema(app_id)
        plan = plan_filter(filter, schema[1]) if schema is not None else None
        if schema is None or plan is None:
            return 0
        counts = []
        for p in [plan, named(plan, exclude)] if exclude else [plan]:
            flt = build_filter(m, m.Range, p)
            result = await self._call(self._client.count(
                self._name(app_id), count_filter=flt, exact=flt is not None), missing=None)
            counts.append(result.count if result is not None else 0)
        return counts[0] - sum(counts[1:])

    async def facet(
        self, app_id: str, key: str, *, limit: int = 10, filter: Filter = (),
        exclude: Sequence[str] = (),
    ) -> list[FacetCount]:
        """Exact value counts of a keyword or integer field, most frequent first."""
        schema, flt = await self._plan(app_id, filter, exclude)
        if schema is None or limit <= 0:
            return []
        result = await self._call(self._client.facet(
            self._name(app_id), key, facet_filter=flt, limit=limit, exact=flt is not None),
            missing=None)
        return facet_counts((h.value, h.count) for h in (result.hits if result else []))

    async def value_range(
        self, app_id: str, key: str, filter: Filter = (), exclude: Sequence[str] = (),
    ) -> tuple[float, float] | None:
        """Min and max of a numeric field, by ordered scrolls over its range index."""
        from qdrant_client import models as m

        schema, flt = await self._plan(app_id, filter, exclude)
        if schema is None:
            return None
        ends = []
        for direction in (m.Direction.ASC, m.Direction.DESC):
            found = await self._call(self._client.scroll(
                self._name(app_id), scroll_filter=flt, limit=1, with_payload=[key],
                with_vectors=False, order_by=m.OrderBy(key=key, direction=direction)),
                missing=None)
            ends += [r.payload[key] for r in (found[0] if found else [])]
        return (ends[0], ends[1]) if len(ends) == 2 else None

    async def scroll(
        self, app_id: str, *, limit: int = 256, offset: str | None = None, filter: Filter = (),
        fields: Sequence[str] | None = None, with_vectors: bool = False,
    ) -> ScrollPage:
        """The points that satisfy the filter, a page at a time in point-id order."""
        schema, flt = await self._plan(app_id, filter, ())
        if schema is None or limit <= 0:
            return ScrollPage([], None)
        found = await self._call(self._client.scroll(
            self._name(app_id), scroll_filter=flt, limit=limit, offset=scroll_offset(offset),
            with_payload=True if fields is None else [IM_NAME, *fields],
            with_vectors=with_vectors), missing=None)
        records, after = found if found is not None else ([], None)
        return ScrollPage([IndexPoint(r.payload[IM_NAME], list(r.vector) if with_vectors else [],
                                      dict(r.payload)) for r in records],
                          None if after is None else str(after))

    async def _plan(
        self, app_id: str, filter: Filter, exclude: Sequence[str],
    ) -> tuple[tuple[int, dict[str, str]] | None, Any]:
        """(dim, field types) and the engine filter; no schema when nothing can match."""
        from qdrant_client import models as m

        schema = await self._schema(app_id)
        plan = plan_filter(filter, schema[1]) if schema is not None else None
        if schema is None or plan is None:
            return None, None
        return schema, build_filter(m, m.Range, plan, exclude)

    def _name(self, app_id: str) -> str:
        return self._prefix + check_app_id(app_id)

    async def _schema(self, app_id: str) -> tuple[int, dict[str, str]] | None:
        """(dim, field types) of the collection, from its metadata; None when it is missing."""
        cached = self._schemas.get(app_id)
        if cached is not None and time.monotonic() - cached[0] < SCHEMA_TTL_S:
            return cached[1], cached[2]
        info = await self._call(self._client.get_collection(self._name(app_id)), missing=None)
        if info is None:
            self._schemas.pop(app_id, None)
            return None
        meta = info.config.metadata or {}
        dim, types = info.config.params.vectors.size, dict(meta.get("magpie_fields") or [])
        self._schemas[app_id] = (time.monotonic(), dim, types)
        return dim, types

    async def _call(self, call: Awaitable[T], *, missing: Any = _RAISE) -> T:
        """Await a client call, mapping its errors to Magpie's; `missing` is returned when the
        collection (or point) is not found, unless it is left out."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return await call
        except UnexpectedResponse as exc:
            status = exc.status_code or 500
            if status == 404 and missing is not _RAISE:
                return missing
            if status == 404:
                raise NotFound(_reason(exc)) from exc
            if status >= 500 or status == 429:
                raise Unavailable(_reason(exc)) from exc
            if status == 409:
                raise Conflict(_reason(exc)) from exc
            raise InvalidRequest(_reason(exc)) from exc
        except ResponseHandlingException as exc:  # connection refused, timeout
            raise Unavailable(f"Qdrant unreachable: {exc.source!r}") from exc
        except (ValueError, KeyError) as exc:  # local mode's "Collection ... not found"
            if "not found" not in str(exc):
                raise
            if missing is _RAISE:
                raise NotFound(str(exc)) from exc
            return missing


def _reason(exc: Any) -> str:
    return f"Qdrant answered {exc.status_code}: {exc.content[:300]!r}"


def _schema(m: Any, kind: str) -> Any:
    """The payload index for a kind of field, as the embedded index builds it."""
    if kind == "integer":
        return m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, lookup=True, range=True)
    if kind == "text":
        return m.TextIndexParams(
            type=m.TextIndexType.TEXT, tokenizer=m.TokenizerType.WORD, lowercase=True)
    return m.PayloadSchemaType.KEYWORD if kind == "keyword" else m.PayloadSchemaType.FLOAT
