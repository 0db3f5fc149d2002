"""Object key and prefix validation."""
from __future__ import annotations

import pytest

from magpie.common.errors import InvalidRequest
from magpie.common.storage.keys import validate_key, validate_prefix

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "app1/images/abc.jpg",
        "app1/feeds/2024-01-01T00:00:00.csv",
        "a b/ç/日本.png",
        ".hidden/file",
        "a..b/c...d",
        "/".join(["y" * 255] * 4),
        "/".join(["y" * 255] * 3 + ["y" * 254, "z"]),  # exactly 1024 bytes
    ],
)
def test_valid_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs/key",
        "a//b",
        "a/b/",
        "..",
        "../etc/passwd",
        "a/../b",
        "a/./b",
        ".",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "/".join(["y" * 255] * 3 + ["y" * 255, "z"]),  # 1025 bytes
        "/".join(["é" * 100] * 5 + ["é" * 10]),  # 1025 bytes in UTF-8, 515 characters
        "a/" + "y" * 256,
        "x" * 1024,  # one segment, too long for a file name
        "bad\ud800surrogate",
        None,
        b"bytes/key",
        42,
    ],
)
def test_invalid_keys_raise_invalid_request(key: object) -> None:
    with pytest.raises(InvalidRequest):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "app1", "app1/", "app1/images/ab", "a/b/c/"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["/", "/app1", "app1//", "a//b", "../x", "a/../", "a\\b", "a\x00", None, "x" * 1025]
)
def test_invalid_prefixes_raise_invalid_request(prefix: object) -> None:
    with pytest.raises(InvalidRequest):
        validate_prefix(prefix)


def test_error_names_the_offending_key() -> None:
    with pytest.raises(InvalidRequest, match=r"\.\./secret"):
        validate_key("../secret")
