"""JSON Schema export of the bus events (`make schemas`)."""
from __future__ import annotations

import json
from pathlib import Path

from magpie.common.events.registry import EVENT_TYPES


def render_schemas() -> dict[str, str]:
    """File name → JSON Schema text, for every registered event type."""
    out = {}
    for topic, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema()
        schema["$id"] = f"magpie/events/{topic}.json"
        schema["x-topic"] = topic
        out[f"{topic}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into `folder`, removing stale event files; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for old in folder.glob("*.json"):
        if old.name not in rendered:
            old.unlink()
    paths = []
    for name, text in rendered.items():
        path = folder / name
        path.write_text(text)
        paths.append(path)
    return paths
