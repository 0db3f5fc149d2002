"""One object-store scenario, run against both adapters (local folder and S3 via moto)."""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from magpie.common.errors import Conflict, InvalidRequest, NotFound, Unavailable
from magpie.common.ports.object_store import ObjectStore
from magpie.common.storage.local import TMP_DIR, LocalObjectStore
from magpie.common.storage.s3 import S3ObjectStore
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

pytestmark = pytest.mark.integration

CATALOG = {
    "app1/images/a.jpg": b"A" * 10,
    "app1/images/b.jpg": b"B" * 20,
    "app1/feeds/full.csv": b"im_name,im_url\n",
    "app10/images/c.jpg": b"C" * 5,
    "app2/z": b"z",
}


def _s3_store(endpoint: str, bucket: str | None = None) -> S3ObjectStore:
    bucket = bucket or f"magpie-test-{uuid.uuid4().hex[:12]}"
    return S3ObjectStore(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, bucket=bucket)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """A started, empty store of each kind; S3 gets its own bucket per test."""
    if request.param == "local":
        adapter: ObjectStore = LocalObjectStore(tmp_path / "objects")
    else:
        # Only the S3 case needs (and so starts) the moto server.
        adapter = _s3_store(request.getfixturevalue("s3_endpoint"))
    await adapter.start()
    yield adapter
    await adapter.stop()


async def _fill(store: ObjectStore) -> None:
    for key, data in CATALOG.items():
        await store.put(key, data)


# --- the shared scenario ----------------------------------------------------------------------


async def test_put_get_exists_overwrite(store: ObjectStore) -> None:
    assert not await store.exists("app1/images/a.jpg")
    await store.put("app1/images/a.jpg", b"first", content_type="image/jpeg")
    assert await store.exists("app1/images/a.jpg")
    assert await store.get("app1/images/a.jpg") == b"first"

    await store.put("app1/images/a.jpg", b"second, longer than the first")
    assert await store.get("app1/images/a.jpg") == b"second, longer than the first"
    await store.put("app1/images/a.jpg", b"3")
    assert await store.get("app1/images/a.jpg") == b"3"
    assert await store.list("app1/") == ["app1/images/a.jpg"]


async def test_list_by_prefix_is_sorted_and_string_based(store: ObjectStore) -> None:
    await _fill(store)
    assert await store.list("") == sorted(CATALOG)
    assert await store.list("app1/") == [
        "app1/feeds/full.csv",
        "app1/images/a.jpg",
        "app1/images/b.jpg",
    ]
    # A prefix is a string prefix, not a folder: "app1" also matches "app10/...".
    assert await store.list("app1") == sorted(k for k in CATALOG if k.startswith("app1"))
    assert await store.list("app1/images/") == ["app1/images/a.jpg", "app1/images/b.jpg"]
    assert await store.list("app1/images/a") == ["app1/images/a.jpg"]
    assert await store.list("app1/images/a.jpg") == ["app1/images/a.jpg"]
    assert await store.list("app3/") == []
    assert await store.list("app1/nothing/here/") == []


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await _fill(store)
    await store.delete("app1/images/a.jpg")
    assert not await store.exists("app1/images/a.jpg")
    await store.delete("app1/images/a.jpg")
    await store.delete("never/was/there.jpg")
    assert await store.list("app1/images/") == ["app1/images/b.jpg"]
    with pytest.raises(NotFound):
        await store.get("app1/images/a.jpg")


async def test_delete_prefix_counts_what_it_removed(store: ObjectStore) -> None:
    await _fill(store)
    assert await store.delete_prefix("app1/") == 3
    assert await store.list("") == ["app10/images/c.jpg", "app2/z"]
    assert await store.delete_prefix("app1/") == 0
    assert await store.delete_prefix("app") == 2
    assert await store.list("") == []
    # The store is still usable where a whole subtree just vanished.
    await store.put("app1/images/a.jpg", b"again")
    assert await store.get("app1/images/a.jpg") == b"again"


async def test_delete_prefix_many_objects(store: ObjectStore) -> None:
    keys = [f"bulk/{i:04d}.bin" for i in range(1001)]  # more than one S3 batch of 1000
    for start in range(0, len(keys), 50):
        await asyncio.gather(*(store.put(key, b"x") for key in keys[start : start + 50]))
    assert await store.delete_prefix("bulk/") == 1001
    assert await store.list("bulk/") == []


async def test_usage_bytes(store: ObjectStore) -> None:
    assert await store.usage_bytes("") == 0
    await _fill(store)
    assert await store.usage_bytes("") == sum(len(v) for v in CATALOG.values())
    assert await store.usage_bytes("app1/images/") == 30
    assert await store.usage_bytes("app1/") == 30 + len(CATALOG["app1/feeds/full.csv"])
    assert await store.usage_bytes("missing/") == 0


async def test_get_missing_raises_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await store.get("app1/images/missing.jpg")
    await store.put("app1/images/a.jpg", b"a")
    # A "folder" on the local disk is no object either.
    with pytest.raises(NotFound):
        await store.get("app1/images")
    assert not await store.exists("app1/images")


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/b/", "../x", "a/../b", "a/./b", "a\\b", "a\x00b", "x" * 1025]
)
async def test_bad_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidRequest):
        await store.put(key, b"data")
    with pytest.raises(InvalidRequest):
        await store.get(key)
    with pytest.raises(InvalidRequest):
        await store.exists(key)
    with pytest.raises(InvalidRequest):
        await store.delete(key)


@pytest.mark.parametrize("prefix", ["/", "/abs", "a//", "../", "a\\"])
async def test_bad_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    for call in (store.list, store.delete_prefix, store.usage_bytes):
        with pytest.raises(InvalidRequest):
            await call(prefix)


async def test_binary_data_round_trips_byte_exact(store: ObjectStore) -> None:
    blobs = {
        "bin/all-bytes": bytes(range(256)) * 64,
        "bin/random": os.urandom(3 * 1024 * 1024 + 7),
        "bin/crlf-and-nul": b"\r\n\x00\r\x00\n\xff\xfe",
        "bin/empty": b"",
        "bin/ünïcode name.jpg": "unicode payload ✓".encode(),
    }
    for key, data in blobs.items():
        await store.put(key, data)
    for key, data in blobs.items():
        assert await store.get(key) == data
    assert await store.list("bin/") == sorted(blobs)
    assert await store.usage_bytes("bin/") == sum(len(d) for d in blobs.values())


async def test_restart_keeps_objects(store: ObjectStore) -> None:
    await store.put("keep/me", b"kept")
    await store.stop()
    await store.start()  # the bucket or folder exists already: no error, nothing lost
    assert await store.get("keep/me") == b"kept"


# --- local folder only --------------------------------------------------------------------


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalObjectStore]:
    adapter = LocalObjectStore(tmp_path / "objects")
    await adapter.start()
    yield adapter
    await adapter.stop()


async def test_local_failed_write_keeps_previous_object(
    local_store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await local_store.put("app1/images/a.jpg", b"the good version")

    def crash(fd: int) -> None:
        raise OSError("disk on fire")

    # The new bytes are in the temp file when the "crash" hits, before the rename.
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        await local_store.put("app1/images/a.jpg", b"the half-written version")
    monkeypatch.undo()

    assert await local_store.get("app1/images/a.jpg") == b"the good version"
    assert await local_store.list("") == ["app1/images/a.jpg"]
    assert list((local_store.root / TMP_DIR).iterdir()) == []  # the temp file was cleaned up


async def test_local_crash_leftovers_are_hidden_and_swept(local_store: LocalObjectStore) -> None:
    # What a process killed mid-write leaves: a temp file that was never renamed.
    leftover = local_store.root / TMP_DIR / "dead.part"
    leftover.write_bytes(b"half")
    os.utime(leftover, (0, 0))
    await local_store.put("a/b", b"ok")
    assert await local_store.list("") == ["a/b"]
    assert await local_store.usage_bytes("") == 2
    assert await local_store.delete_prefix("") == 1
    await local_store.start()
    assert not leftover.exists()
    with pytest.raises(InvalidRequest):
        await local_store.put(f"{TMP_DIR}/x", b"reserved")
    assert await local_store.list(f"{TMP_DIR}/") == []


async def test_local_key_cannot_be_file_and_folder(local_store: LocalObjectStore) -> None:
    await local_store.put("a/b", b"file")
    with pytest.raises(Conflict):
        await local_store.put("a/b/c", b"under a file")
    with pytest.raises(Conflict):
        await local_store.put("a", b"over a folder")
    assert await local_store.get("a/b") == b"file"


async def test_local_delete_prunes_empty_folders(local_store: LocalObjectStore) -> None:
    await local_store.put("app1/images/deep/a.jpg", b"a")
    await local_store.delete("app1/images/deep/a.jpg")
    assert not (local_store.root / "app1").exists()
    assert local_store.root.is_dir()


# --- S3 only ------------------------------------------------------------------------------


async def test_s3_keeps_content_type(s3_endpoint: str) -> None:
    adapter = _s3_store(s3_endpoint)
    await adapter.start()
    try:
        await adapter.put("img/a.png", b"\x89PNG", content_type="image/png")
        stat = adapter._client.stat_object(bucket_name=adapter.bucket, object_name="img/a.png")
        assert stat.content_type == "image/png"
    finally:
        await adapter.stop()


async def test_s3_two_stores_share_a_bucket(s3_endpoint: str) -> None:
    bucket = f"magpie-test-{uuid.uuid4().hex[:12]}"
    first, second = _s3_store(s3_endpoint, bucket), _s3_store(s3_endpoint, bucket)
    await first.start()
    await second.start()  # finds the bucket the first one created
    await first.put("shared/key", b"v")
    assert await second.get("shared/key") == b"v"
    await first.stop()
    await second.stop()


async def test_s3_unreachable_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        adapter = S3ObjectStore(f"127.0.0.1:{port}", "k", "s", bucket="nowhere", retries=0)
        with pytest.raises(Unavailable) as caught:
            await adapter.start()
    assert caught.value.retryable


async def test_s3_used_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        await _s3_store("127.0.0.1:1").get("a")
