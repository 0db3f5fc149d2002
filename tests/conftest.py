"""Shared fixtures; engine fixtures live in tests/fixtures, one module per engine."""
pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.s3",
    "tests.fixtures.postgres",
    "tests.fixtures.server",
    "tests.fixtures.images",
    "tests.fixtures.browser",
]
