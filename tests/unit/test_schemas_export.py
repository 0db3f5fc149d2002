"""The exported JSON Schemas in schemas/ match the event models (run `make schemas`)."""
from pathlib import Path

import pytest

from magpie.common.events.export import render_schemas

pytestmark = pytest.mark.unit
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_exported_schemas_are_current():
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    assert set(on_disk) == set(rendered), "schemas/ is stale: run `make schemas`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"schemas/{name} is stale: run `make schemas`"


def test_every_event_schema_carries_its_version():
    for text in render_schemas().values():
        assert '"version"' in text
