"""The synchronous client, `Magpie`, and its admin API part."""
from __future__ import annotations

import time
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


class Magpie:
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
                 backoff: float = 0.5, transport: httpx.BaseTransport | None = None) -> None:
        self.credentials = Credentials(access_key, secret_key, app_key)
        self.retry = RetryPolicy(max_retries=max_retries, backoff=backoff)
        # uid/sid join searches (va_uid/va_sid) with the events tracked after them.
        self.uid = uid or new_id()
        self.sid = sid or new_id()
        self._http = httpx.Client(base_url=host.rstrip("/"), timeout=timeout, transport=transport)
        self.admin = Admin(self)

    def __enter__(self) -> Magpie:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(self, call: ops.Call[T]) -> T:
        """Send one call, retrying as the policy allows; its parsed answer."""
        attempt = 0
        while True:
            kw = build(call.request, self.credentials)
            try:
                response = self._http.request(**kw)
                return call.parse(decode(call.request, response))
            except (httpx.TransportError, APIError) as exc:
                if attempt >= self.retry.max_retries or not should_retry(call.request, exc):
                    if isinstance(exc, httpx.TransportError):
                        raise TransportError(f"{call.request.method} {call.request.path}: {exc!r}") from exc
                    raise
                time.sleep(self.retry.delay(attempt, retry_after(exc)))
                attempt += 1

    # --- Data API ------------------------------------------------------------------------
    def insert(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """Insert or update up to 100 items (`im_name`, `im_url`, fields); answers at once."""
        return self.call(ops.insert(items))

    def update(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """Change the fields of existing items (no `im_url`: nothing is downloaded again)."""
        return self.call(ops.insert(items))

    def remove(self, im_names: Iterable[str]) -> InsertResult:
        """Remove items by im_name; unknown ones come back as errors with code 102."""
        return self.call(ops.remove(im_names))

    def insert_status(self, trans_id: int, error_page: int = 1, error_limit: int = 10) -> TransactionStatus:
        """A transaction's progress and a page of its per-item errors."""
        return self.call(ops.insert_status(trans_id, error_page, error_limit))

    def wait(self, trans_ids: int | Iterable[int], timeout: float = 600,
             poll: float = 0.5) -> list[TransactionStatus]:
        """Wait until the transactions finish; their final status with every error."""
        ids = [trans_ids] if isinstance(trans_ids, int) else list(trans_ids)
        return bulk.wait_sync(self, ids, timeout, poll)

    def insert_items(self, items: Iterable[Mapping[str, Any]]) -> InsertResult:
        """The JSON API's insert (`POST /v1/items`): typed values, up to 100 items."""
        return self.call(ops.insert_items(items))

    def remove_items(self, im_names: Iterable[str]) -> InsertResult:
        """The JSON API's remove."""
        return self.call(ops.remove_items(im_names))

    def transaction(self, trans_id: int, error_page: int = 1, error_limit: int = 10) -> TransactionStatus:
        """The JSON API's transaction status."""
        return self.call(ops.transaction(trans_id, error_page, error_limit))

    def transactions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest transactions, newest first."""
        return self.call(ops.transactions(limit))

    def get_item(self, im_name: str) -> dict[str, Any]:
        """One indexed item: im_url, colours and every field."""
        return self.call(ops.get_item(im_name))

    def app_info(self) -> AppInfo:
        """The application this client's key opens, the key's scope and the item count."""
        return self.call(ops.app_info())

    def bulk_insert(self, rows: Iterable[Mapping[str, Any]], *, total: int | None = None,
                    chunk_size: int = 100, progress: bool = True, wait: bool = True,
                    timeout: float = 3600, max_in_flight: int = 8) -> BulkResult:
        """Insert any number of rows in chunks of `chunk_size`, at most `max_in_flight`
        transactions unfinished at a time, with a progress bar (tqdm, when installed);
        with `wait`, until every item has its final status, collecting per-item errors."""
        return bulk.run_sync(self, rows, bulk.Options(total, chunk_size, progress, wait, timeout,
                                                      max_in_flight))

    def upload_csv(self, path: str | Path, **kw: Any) -> BulkResult:
        """bulk_insert the rows of a CSV file (header row: im_name, im_url, fields)."""
        path = Path(path)
        return self.bulk_insert(bulk.csv_rows(path), total=bulk.count_csv_rows(path), **kw)

    def upload_folder(self, folder: str | Path, base_url: str, *, fields: Mapping[str, Any] | None = None,
                      **kw: Any) -> BulkResult:
        """bulk_insert every image under `folder`, which a web server serves at `base_url`:
        im_name is the path without extension, im_url `base_url/<path>`; `fields` go to every item."""
        rows = bulk.folder_rows(Path(folder), base_url, fields)
        return self.bulk_insert(rows, total=len(rows), **kw)

    # --- search --------------------------------------------------------------------------
    def search(self, im_name: str, **options: Unpack[SearchOptions]) -> SearchResult:
        """Items visually similar to the indexed item `im_name`."""
        return self.call(ops.search(im_name, options, self.uid, self.sid))

    def uploadsearch(self, image: ops.FileInput | None = None, *, im_url: str | None = None,
                     im_id: str | None = None, box: tuple[int, int, int, int] | None = None,
                     **options: Unpack[SearchOptions]) -> SearchResult:
        """Items like an image: a file path or bytes, an `im_url`, or an earlier answer's `im_id`."""
        return self.call(ops.uploadsearch(options, image=image, im_url=im_url, im_id=im_id, box=box,
                                          uid=self.uid, sid=self.sid))

    def recommendation(self, im_name: str, **options: Unpack[SearchOptions]) -> SearchResult:
        """"You may also like": similar items without near-duplicates, diversified."""
        return self.call(ops.recommendation(im_name, options, self.uid, self.sid))

    def colorsearch(self, color: str | Iterable[str], **options: Unpack[SearchOptions]) -> SearchResult:
        """Items by dominant colour (`RRGGBB`, or several `RRGGBB:weight`)."""
        return self.call(ops.colorsearch(color, options, self.uid, self.sid))

    # --- tracking ------------------------------------------------------------------------
    def track(self, action: str, **fields: Any) -> None:
        """Record one event through the pixel (`query_id` = the search's reqid, `pid`, `pos`,
        `value`, `currency`, ...); InvalidRequestError when the server refuses it."""
        self.call(ops.track_pixel(ops.event(action, fields, self.uid, self.sid)))

    def track_batch(self, events: Iterable[Mapping[str, Any]]) -> TrackResult:
        """Record up to 1,000 events (each a mapping with `action`) in one request."""
        evs = [ops.event(e["action"], {k: v for k, v in e.items() if k != "action"}, self.uid, self.sid)
               for e in events]
        return self.call(ops.track_batch(evs, SDK_NAME, SDK_VERSION))

    def report(self, date_from: str | None = None, date_to: str | None = None, solution: str = "",
               top: int = 10) -> dict[str, Any]:
        """The analytics report (searches, views, clicks, CTR, conversion, revenue...)."""
        return self.call(ops.report(date_from, date_to, solution, top))

    def usage(self, date_from: str | None = None, date_to: str | None = None) -> dict[str, Any]:
        """Usage statistics: API calls, searches, events, indexed items, stored bytes."""
        return self.call(ops.usage(date_from, date_to))


class Admin:
    """The admin API (`/admin/v1`) as a team member: applications, keys, schemas."""

    def __init__(self, client: Magpie) -> None:
        self._client = client

    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """Sign in; the session's token is kept for the next calls."""
        session = self._client.call(ops.sign_in(email, password))
        self._client.credentials.token = session["token"]
        return session

    def use_token(self, token: str) -> None:
        """Use an existing session token."""
        self._client.credentials.token = token

    def me(self) -> dict[str, Any]:
        """The signed-in member."""
        return self._client.call(ops.me())

    def apps(self) -> list[App]:
        """Your account's applications."""
        return self._client.call(ops.apps())

    def create_app(self, name: str, image_type: str = "general") -> App:
        """A new application with its first key set (secret included, shown once)."""
        return self._client.call(ops.create_app(name, image_type))

    def get_app(self, app_id: str) -> App:
        """One application."""
        return self._client.call(ops.get_app(app_id))

    def rename_app(self, app_id: str, name: str) -> App:
        """Rename an application."""
        return self._client.call(ops.rename_app(app_id, name))

    def delete_app(self, app_id: str) -> None:
        """Delete an application with everything it holds."""
        self._client.call(ops.delete_app(app_id))

    def keys(self, app_id: str) -> list[Key]:
        """An application's key sets (no secrets)."""
        return self._client.call(ops.keys(app_id))

    def create_key(self, app_id: str, label: str = "") -> Key:
        """A new key set; the secret is in this answer only."""
        return self._client.call(ops.create_key(app_id, label))

    def revoke_key(self, app_id: str, access_key: str) -> Key:
        """Revoke a key set."""
        return self._client.call(ops.revoke_key(app_id, access_key))

    def schema(self, app_id: str) -> Schema:
        """An application's schema."""
        return self._client.call(ops.get_schema(app_id))

    def set_schema(self, app_id: str, fields: Iterable[Field | Mapping[str, Any]]) -> Schema:
        """Replace the schema (refused whole, with the culprit named, when a field is wrong)."""
        return self._client.call(ops.set_schema(app_id, fields))

    def add_field(self, app_id: str, field: Field | Mapping[str, Any]) -> Schema:
        """Add one field."""
        return self._client.call(ops.add_field(app_id, field))

    def remove_field(self, app_id: str, name: str) -> Schema:
        """Remove a field and its data."""
        return self._client.call(ops.remove_field(app_id, name))

    def schema_preset(self) -> list[Field]:
        """The recommended fields."""
        return self._client.call(ops.schema_preset())

    def report(self, app_id: str, date_from: str | None = None, date_to: str | None = None,
               solution: str = "", top: int = 10) -> dict[str, Any]:
        """An application's analytics report."""
        return self._client.call(ops.admin_report(app_id, date_from, date_to, solution, top))

    def client_for(self, app: App, **kw: Any) -> Magpie:
        """A data/search client for an application just created (its keys are in `app`)."""
        return Magpie(str(self._client._http.base_url), access_key=app.access_key,
                      secret_key=app.secret_key, app_key=app.app_key, **kw)
