"""The object store on S3 or MinIO, through the `minio` client.

The client is synchronous, so every call runs in a worker thread. Errors are mapped once, in
`_call`: a missing key becomes `NotFound` where the port says so, and a server that cannot be
reached or answers "busy" becomes `Unavailable` (retryable). Other S3 errors (access denied,
missing bucket) are configuration mistakes and propagate as `minio.error.S3Error`.
"""
from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from magpie.common.errors import NotFound, Unavailable
from magpie.common.storage.keys import validate_key, validate_prefix

if TYPE_CHECKING:
    import urllib3
    from minio import Minio

    from magpie.common.settings import Settings

T = TypeVar("T")

# S3 error codes that mean "try again later" rather than "your request is wrong".
_BUSY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject"})


class S3ObjectStore:
    """An ObjectStore over one S3/MinIO bucket."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = "us-east-1",
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retries: int = 2,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._retries = retries
        self._client: Minio | None = None
        self._http: urllib3.PoolManager | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        """The store the `s3_*` settings describe."""
        return cls(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            bucket=settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    async def start(self) -> None:
        """Open the client and create the bucket if it is missing."""
        self._client = self._make_client()
        await self._call(self._ensure_bucket)

    async def stop(self) -> None:
        """Close the client's pooled connections."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            http.clear()  # minio has no close(): the pool we gave it is what holds sockets

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Store `data` under `key`, replacing what was there."""
        validate_key(key)
        data = bytes(data)
        await self._call(
            lambda c: c.put_object(
                bucket_name=self.bucket,
                object_name=key,
                data=io.BytesIO(data),
                length=len(data),
                content_type=content_type,
            )
        )

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`; NotFound if there are none."""
        validate_key(key)
        return await self._call(lambda c: self._read(c, key), missing_key=key)

    async def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""
        validate_key(key)
        try:
            await self._call(
                lambda c: c.stat_object(bucket_name=self.bucket, object_name=key), missing_key=key
            )
        except NotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Remove `key` if present (S3 deletes are idempotent already)."""
        validate_key(key)
        await self._call(lambda c: c.remove_object(bucket_name=self.bucket, object_name=key))

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""
        validate_prefix(prefix)
        # S3 lists in UTF-8 byte order, which is code-point order; sort anyway to promise it.
        return sorted(name for name, _ in await self._call(lambda c: self._objects(c, prefix)))

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key under `prefix` in batched requests; returns how many were removed."""
        validate_prefix(prefix)
        return await self._call(lambda c: self._delete_prefix(c, prefix))

    async def usage_bytes(self, prefix: str) -> int:
        """Total size of the objects under `prefix`."""
        validate_prefix(prefix)
        return sum(size for _, size in await self._call(lambda c: self._objects(c, prefix)))

    # --- blocking helpers, run in a worker thread -----------------------------------------

    def _make_client(self) -> Minio:
        import certifi
        import urllib3
        from minio import Minio

        # minio's default pool retries a refused connection for seconds with 5-minute
        # timeouts; a dependency that is down should surface as Unavailable quickly.
        self._http = http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self._connect_timeout_s, read=self._read_timeout_s),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=self._retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        return Minio(
            endpoint=self.endpoint,
            access_key=self._access_key,
            secret_key=self._secret_key,
            secure=self.secure,
            region=self.region,
            http_client=http,
        )

    def _ensure_bucket(self, client: Minio) -> None:
        from minio.error import S3Error

        if client.bucket_exists(bucket_name=self.bucket):
            return
        try:
            client.make_bucket(bucket_name=self.bucket, location=self.region)
        except S3Error as exc:
            # Another service created it between our check and our request.
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _read(self, client: Minio, key: str) -> bytes:
        response = client.get_object(bucket_name=self.bucket, object_name=key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _objects(self, client: Minio, prefix: str) -> list[tuple[str, int]]:
        objects = client.list_objects(
            bucket_name=self.bucket, prefix=prefix or None, recursive=True
        )
        return [(o.object_name, o.size or 0) for o in objects if not o.is_dir]

    def _delete_prefix(self, client: Minio, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject

        names = [name for name, _ in self._objects(client, prefix)]
        if not names:
            return 0
        # remove_objects sends up to 1000 keys per request and yields only the failures;
        # it is lazy, so the errors must be consumed for the requests to happen at all.
        errors = [
            e
            for e in client.remove_objects(
                bucket_name=self.bucket, delete_object_list=(DeleteObject(n) for n in names)
            )
            if e.code not in _MISSING_CODES
        ]
        if errors:
            # Deleting a prefix again is harmless, so the caller may simply retry.
            raise Unavailable(
                f"Could not delete {len(errors)} of {len(names)} objects under {prefix!r}: "
                f"{errors[0].code} {errors[0].message}"
            )
        return len(names)

    async def _call(self, fn: Callable[[Minio], T], *, missing_key: str | None = None) -> T:
        """Run `fn(client)` in a thread and map the client's errors onto Magpie's."""
        import urllib3
        from minio.error import InvalidResponseError, S3Error, ServerError

        if self._client is None:
            raise RuntimeError("S3ObjectStore used before start()")
        client = self._client
        try:
            return await asyncio.to_thread(fn, client)
        except S3Error as exc:
            if missing_key is not None and exc.code in _MISSING_CODES:
                raise NotFound(f"No object under key {missing_key!r}.") from None
            if exc.code in _BUSY_CODES:
                raise Unavailable(f"S3 at {self.endpoint} is busy: {exc.code}.") from exc
            raise
        except (ServerError, InvalidResponseError) as exc:
            # Non-XML error pages come from proxies and load balancers in front of the store.
            status = getattr(exc, "status_code", None) or getattr(exc, "_code", 0)
            if status >= 500:
                raise Unavailable(f"S3 at {self.endpoint} failed: {exc}.") from exc
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"S3 at {self.endpoint} is unreachable: {exc}.") from exc
