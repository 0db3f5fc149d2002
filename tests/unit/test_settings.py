"""Settings: defaults need nothing, MAGPIE_* variables override."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from magpie.common.settings import BusKind, Settings

pytestmark = pytest.mark.unit


def test_standalone_defaults(monkeypatch):
    for key in ("MAGPIE_HOST", "MAGPIE_PORT", "MAGPIE_DATA_DIR", "MAGPIE_BUS", "MAGPIE_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    s = Settings(_env_file=None)
    assert (s.host, s.port, s.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert s.bus is BusKind.INPROCESS
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("data/control.sqlite3")
    assert s.allow_private_image_urls is False


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MAGPIE_PORT", "9001")
    monkeypatch.setenv("MAGPIE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAGPIE_BUS", "kafka")
    monkeypatch.setenv("MAGPIE_DATABASE_URL", "postgresql+psycopg://u@db/magpie")
    s = Settings(_env_file=None)
    assert s.port == 9001 and s.data_dir == tmp_path and s.bus is BusKind.KAFKA
    assert s.resolved_database_url == "postgresql+psycopg://u@db/magpie"


@pytest.mark.parametrize(("key", "value"), [("MAGPIE_PORT", "0"), ("MAGPIE_PORT", "x"), ("MAGPIE_BUS", "rabbit")])
def test_bad_values_are_refused(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_sftp_address_is_where_merchants_connect(monkeypatch):
    for k in ("MAGPIE_HOST", "MAGPIE_SFTP_HOST", "MAGPIE_SFTP_PUBLIC_HOST", "MAGPIE_SFTP_PUBLIC_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MAGPIE_SFTP_HOST", "0.0.0.0")
    # A wildcard listen address is no address to give out: the caller's host name stands in.
    assert Settings(_env_file=None).sftp_address("shop.example") == ("shop.example", 2222)
    assert Settings(_env_file=None).sftp_address() == ("0.0.0.0", 2222)
    monkeypatch.setenv("MAGPIE_SFTP_PUBLIC_HOST", "sftp.example")
    monkeypatch.setenv("MAGPIE_SFTP_PUBLIC_PORT", "22022")
    assert Settings(_env_file=None).sftp_address("shop.example") == ("sftp.example", 22022)
