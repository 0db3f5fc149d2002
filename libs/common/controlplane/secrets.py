"""Passwords, keys and tokens: generation and hashing (stdlib only)."""
from __future__ import annotations

import hashlib
import hmac
import secrets

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """A salted scrypt hash in the form `scrypt$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash made by `hash_password`."""
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token: enough, as tokens cannot be guessed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A session token or secret key: 256 random bits."""
    return secrets.token_urlsafe(32)


def new_key() -> str:
    """An access key or app key: 128 random bits, hex (safe in file names and URLs)."""
    return secrets.token_hex(16)


def new_app_id() -> str:
    """A short, unguessable application id."""
    return "app_" + secrets.token_hex(8)


def constant_time_equal(a: str, b: str) -> bool:
    """Compare secrets without leaking timing."""
    return hmac.compare_digest(a.encode(), b.encode())
