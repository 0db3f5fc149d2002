"""The asynchronous client, `AsyncMagpie`, and its admin API part: the same calls as `Magpie`."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from magpie_sdk import _ops as ops
from magpie_sdk import bulk
from magpie_sdk._http import (
    DEFAULT_TIMEOUT,
    SDK_NAME,
    SDK_VERSION,
    Credentials,
    RetryPolicy,
    build,
    decode,
    new_id,
    retry_after,
    should_retry,
)
from magpie_sdk.errors import APIError, TransportError
from magpie_sdk.types import (
    App,
    AppInfo,
    BulkResult,
    Field,
    InsertResult,
    Key,
    Schema,
    SearchResult,
    TrackResult,
    TransactionStatus,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from magpie_sdk.types import SearchOptions

T = TypeVar("T")


class AsyncMagpie:
    """A Magpie application's client: Data API, search, tracking, reports; `admin` for the
    admin API. Give `access_key` + `secret_key` for full access (server side), or only the
    search-only `app_key` (search and tracking, as a browser would).

    Calls that are safe to repeat (reads, searches, inserts: idempotent by im_name, tracking
    batches: deduplicated) are retried with exponential backoff on connect errors, timeouts,
    5xx and 429; any call is retried when the connection could not even be made.
    """

    def __init__(self, host: str = "http://127.0.0.1:8080", *, access_key: str | None = None,
                 secret_key: str | None = None, app_key: str | None = None,
                 uid: str | None = None, sid: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, max_retries: int = 3,
                 backoff: float = 0.5, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.credentials = Credentials(access_key, secret_key, app_key)
        self.retry = RetryPolicy(max_retries=max_retries, backoff=backoff)
        # uid/sid join searches (va_uid/va_sid) with the events tracked after them.
        self.uid = uid or new_id()
        self.sid = sid or new_id()
        self._http = httpx.AsyncClient(base_url=host.rstrip("/"), timeout=timeout, transport=transport)
        self.admin = AsyncAdmin(self)

    async def __aenter__(self) -> AsyncMagpie:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def call(self, call: ops.Call[T]) -> T:
        """Send one call, retrying as the policy allows; its parsed answer."""
        attempt = 0
        while True:
            kw = build(call.request, self.credentials)
            try:
                response = await self._http.request(**kw)
                return call.parse(decode(call.request, response))
            except (httpx.TransportError, APIError) as exc:
                if attempt >= self.retry.max_retries or not should_retry(call.request, exc):
                    if isinstance(exc, httpx.TransportError):
                        raise TransportError(f"{call.request.method} {call.request.path}: {exc!r}") from exc
                    raise
                await asyncio.sleep(self.retry.delay(attempt, retry_after(exc)))
                attempt += 1

    # --- Data API ------------------------------------------------------------------------
    async def insert(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """Insert or update up to 100 items (`im_name`, `im_url`, fields); answers at once."""
        return await self.call(ops.insert(items))

    async def update(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """Change the fields of existing items (no `im_url`: nothing is downloaded again)."""
        return await self.call(ops.insert(items))

    async def remove(self, im_names: Iterable[str]) -> InsertResult:
        """Remove items by im_name; unknown ones come back as errors with code 102."""
        return await self.call(ops.remove(im_names))

    async def insert_status(self, trans_id: int, error_page: int = 1, error_limit: int = 10) -> TransactionStatus:
        """A transaction's progress and a page of its per-item errors."""
        return await self.call(ops.insert_status(trans_id, error_page, error_limit))

    async def wait(self, trans_ids: int | Iterable[int], timeout: float = 600,
             poll: float = 0.5) -> list[TransactionStatus]:
        """Wait until the transactions finish; their final status with every error."""
        ids = [trans_ids] if isinstance(trans_ids, int) else list(trans_ids)
        return await bulk.wait_async(self, ids, timeout, poll)

    async def insert_items(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """The JSON API's insert (`POST /v1/items`): typed values, up to 100 items."""
        return await self.call(ops.insert_items(items))

    async def remove_items(self, im_names: Iterable[str]) -> InsertResult:
        """The JSON API's remove."""
        return await self.call(ops.remove_items(im_names))

    async def transaction(self, trans_id: int, error_page: int = 1, error_limit: int = 10) -> TransactionStatus:
        """The JSON API's transaction status."""
        return await self.call(ops.transaction(trans_id, error_page, error_limit))

    async def transactions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest transactions, newest first."""
        return await self.call(ops.transactions(limit))

    async def get_item(self, im_name: str) -> dict[str, Any]:
        """One indexed item: im_url, colours and every field."""
        return await self.call(ops.get_item(im_name))

    async def app_info(self) -> AppInfo:
        """The application this client's key opens, the key's scope and the item count."""
        return await self.call(ops.app_info())

    async def bulk_insert(self, rows: Iterable[Mapping[str, Any]], *, total: int | None = None,
                    chunk_size: int = 100, progress: bool = True, wait: bool = True,
                    timeout: float = 3600, max_in_flight: int = 8) -> BulkResult:
        """Insert any number of rows in chunks of `chunk_size`, at most `max_in_flight`
        transactions unfinished at a time, with a progress bar (tqdm, when installed);
        with `wait`, until every item has its final status, collecting per-item errors."""
        return await bulk.run_async(self, rows, bulk.Options(total, chunk_size, progress, wait, timeout,
                                                      max_in_flight))

    async def upload_csv(self, path: str | Path, **kw: Any) -> BulkResult:
        """bulk_insert the rows of a CSV file (header row: im_name, im_url, fields)."""
        path = Path(path)
        return await self.bulk_insert(bulk.csv_rows(path), total=bulk.count_csv_rows(path), **kw)

    async def upload_folder(self, folder: str | Path, base_url: str, *, fields: Mapping[str, Any] | None = None,
                      **kw: Any) -> BulkResult:
        """bulk_insert every image under `folder`, which a web server serves at `base_url`:
        im_name is the path without extension, im_url `base_url/<path>`; `fields` go to every item."""
        rows = bulk.folder_rows(Path(folder), base_url, fields)
        return await self.bulk_insert(rows, total=len(rows), **kw)

    # --- search --------------------------------------------------------------------------
    async def search(self, im_name: str, **options: Unpack[SearchOptions]) -> SearchResult:
        """Items visually similar to the indexed item `im_name`."""
        return await self.call(ops.search(im_name, options, self.uid, self.sid))

    async def uploadsearch(self, image: ops.FileInput | None = None, *, im_url: str | None = None,
                     im_id: str | None = None, box: tuple[int, int, int, int] | None = None,
                     **options: Unpack[SearchOptions]) -> SearchResult:
        """Items like an image: a file path or bytes, an `im_url`, or an earlier answer's `im_id`."""
        return await self.call(ops.uploadsearch(options, image=image, im_url=im_url, im_id=im_id, box=box,
                                          uid=self.uid, sid=self.sid))

    async def recommendation(self, im_name: str, **options: Unpack[SearchOptions]) -> SearchResult:
        """"You may also like": similar items without near-duplicates, diversified."""
        return await self.call(ops.recommendation(im_name, options, self.uid, self.sid))

    async def colorsearch(self, color: str | Iterable[str], **options: Unpack[SearchOptions]) -> SearchResult:
        """Items by dominant colour (`RRGGBB`, or several `RRGGBB:weight`)."""
        return await self.call(ops.colorsearch(color, options, self.uid, self.sid))

    # --- tracking ------------------------------------------------------------------------
    async def track(self, action: str, **fields: Any) -> None:
        """Record one event through the pixel (`query_id` = the search's reqid, `pid`, `pos`,
        `value`, `currency`, ...); InvalidRequestError when the server refuses it."""
        await self.call(ops.track_pixel(ops.event(action, fields, self.uid, self.sid)))

    async def track_batch(self, events: Iterable[Mapping[str, Any]]) -> TrackResult:
        """Record up to 1,000 events (each a mapping with `action`) in one request."""
        evs = [ops.event(e["action"], {k: v for k, v in e.items() if k != "action"}, self.uid, self.sid)
               for e in events]
        return await self.call(ops.track_batch(evs, SDK_NAME, SDK_VERSION))

    async def report(self, date_from: str | None = None, date_to: str | None = None, solution: str = "",
               top: int = 10) -> dict[str, Any]:
        """The analytics report (searches, views, clicks, CTR, conversion, revenue...)."""
        return await self.call(ops.report(date_from, date_to, solution, top))

    async def usage(self, date_from: str | None = None, date_to: str | None = None) -> dict[str, Any]:
        """Usage statistics: API calls, searches, events, indexed items, stored bytes."""
        return await self.call(ops.usage(date_from, date_to))


class AsyncAdmin:
    """The admin API (`/admin/v1`) as a team member: applications, keys, schemas."""

    def __init__(self, client: AsyncMagpie) -> None:
        self._client = client

    async def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """Sign in; the session's token is kept for the next calls."""
        session = await self._client.call(ops.sign_in(email, password))
        self._client.credentials.token = session["token"]
        return session

    def use_token(self, token: str) -> None:
        """Use an existing session token."""
        self._client.credentials.token = token

    async def me(self) -> dict[str, Any]:
        """The signed-in member."""
        return await self._client.call(ops.me())

    async def apps(self) -> list[App]:
        """Your account's applications."""
        return await self._client.call(ops.apps())

    async def create_app(self, name: str, image_type: str = "general") -> App:
        """A new application with its first key set (secret included, shown once)."""
        return await self._client.call(ops.create_app(name, image_type))

    async def get_app(self, app_id: str) -> App:
        """One application."""
        return await self._client.call(ops.get_app(app_id))

    async def rename_app(self, app_id: str, name: str) -> App:
        """Rename an application."""
        return await self._client.call(ops.rename_app(app_id, name))

    async def delete_app(self, app_id: str) -> None:
        """Delete an application with everything it holds."""
        await self._client.call(ops.delete_app(app_id))

    async def keys(self, app_id: str) -> list[Key]:
        """An application's key sets (no secrets)."""
        return await self._client.call(ops.keys(app_id))

    async def create_key(self, app_id: str, label: str = "") -> Key:
        """A new key set; the secret is in this answer only."""
        return await self._client.call(ops.create_key(app_id, label))

    async def revoke_key(self, app_id: str, access_key: str) -> Key:
        """Revoke a key set."""
        return await self._client.call(ops.revoke_key(app_id, access_key))

    async def schema(self, app_id: str) -> Schema:
        """An application's schema."""
        return await self._client.call(ops.get_schema(app_id))

    async def set_schema(self, app_id: str, fields: Iterable[Field | Mapping[str, Any]]) -> Schema:
        """Replace the schema (refused whole, with the culprit named, when a field is wrong)."""
        return await self._client.call(ops.set_schema(app_id, fields))

    async def add_field(self, app_id: str, field: Field | Mapping[str, Any]) -> Schema:
        """Add one field."""
        return await self._client.call(ops.add_field(app_id, field))

    async def remove_field(self, app_id: str, name: str) -> Schema:
        """Remove a field and its data."""
        return await self._client.call(ops.remove_field(app_id, name))

    async def schema_preset(self) -> list[Field]:
        """The recommended fields."""
        return await self._client.call(ops.schema_preset())

    async def report(self, app_id: str, date_from: str | None = None, date_to: str | None = None,
               solution: str = "", top: int = 10) -> dict[str, Any]:
        """An application's analytics report."""
        return await self._client.call(ops.admin_report(app_id, date_from, date_to, solution, top))

    def client_for(self, app: App, **kw: Any) -> AsyncMagpie:
        """A data/search client for an application just created (its keys are in `app`)."""
        return AsyncMagpie(str(self._client._http.base_url), access_key=app.access_key,
                      secret_key=app.secret_key, app_key=app.app_key, **kw)
