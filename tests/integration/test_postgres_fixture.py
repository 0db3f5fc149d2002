"""The `postgres_url` fixture gives a real PostgreSQL server."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


async def test_postgres_fixture_serves_a_real_server(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("select version()"))).scalar_one()
            database = (await conn.execute(text("select current_database()"))).scalar_one()
    finally:
        await engine.dispose()
    assert version.startswith("PostgreSQL")
    assert database == "magpie_test"
