"""Colour backfill on a real qdrant-edge index and object store: items indexed without
colours get them from their stored image and become findable by colour search."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf
from magpie.common.ports.index import IndexPoint
from magpie.common.storage.local import LocalObjectStore
from magpie.image_fetch.colors import dominant_colors
from magpie.search.color_backfill import backfill_colors
from magpie.search.colors import color_collection, color_vector, item_color_vector
from magpie.search.handlers import SYSTEM_KEY
from magpie.search.index.edge import EdgeIndex
from tests.fixtures.catalog import scene, swatch

pytestmark = pytest.mark.integration
APP, DIM = "shop", 8
FIELDS = [FieldSpec(name="brand", type="string", searchable=True)]
RGB = {"red": (220, 20, 30), "green": (30, 180, 40), "blue": (20, 40, 210)}


class Bars:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.done = 0

    def phase(self, name: str, total: int) -> None:
        self.phases.append((name, total))

    def advance(self, n: int) -> None:
        self.done += n


def jpeg(image) -> bytes:  # noqa: ANN001
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


async def test_backfill_extracts_missing_colours_and_fills_colour_search(tmp_path) -> None:
    index, objects = EdgeIndex(tmp_path / "index"), LocalObjectStore(tmp_path / "objects")
    await index.start()
    await objects.start()
    try:
        await index.ensure_collection(APP, DIM, FIELDS)
        await index.ensure_collection(color_collection(APP), 125, FIELDS)
        rng = np.random.default_rng(3)
        images = {f"swatch-{c}": swatch(rgb) for c, rgb in RGB.items()}
        images |= {f"scene-{i}": scene(i) for i in range(4)}
        points = []
        for name, image in images.items():
            key = f"{APP}/images/{name}.jpg"
            await objects.put(key, jpeg(image), "image/jpeg")
            # Indexed before colours were extracted: no colours, no colour point.
            points.append(IndexPoint(name, rng.normal(size=DIM).tolist(),
                                     {"brand": "Old", SYSTEM_KEY: {"image_key": key, "colors": []}}))
        # Colours known, colour point missing: added without reading the image.
        points.append(IndexPoint("known", rng.normal(size=DIM).tolist(),
                                 {"brand": "New", SYSTEM_KEY: {"colors": ["00ff00"]}}))
        # Already complete: skipped.
        done = {"brand": "New", SYSTEM_KEY: {"colors": ["0000ff"], "image_key": "gone"}}
        points.append(IndexPoint("complete", rng.normal(size=DIM).tolist(), done))
        await index.upsert(color_collection(APP), [
            IndexPoint("complete", item_color_vector(["0000ff"]), done)])
        # Its stored image is gone: reported, not fatal.
        points.append(IndexPoint("lost", rng.normal(size=DIM).tolist(),
                                 {"brand": "Old", SYSTEM_KEY: {"image_key": f"{APP}/images/lost.jpg"}}))
        await index.upsert(APP, points)

        bars = Bars()
        result = await backfill_colors(APP, index, objects, FIELDS, page=3, progress=bars)
        assert (result.total, result.extracted, result.added, result.skipped) == (10, 7, 8, 1)
        assert [name for name, _ in result.failed] == ["lost"]
        assert "missing" in result.failed[0][1]
        assert bars.phases == [("colours", 10)] and bars.done == 10

        # The payload holds the colours image-fetch would have extracted.
        red = await index.get(APP, "swatch-red")
        assert red is not None
        stored = Image.open(io.BytesIO(jpeg(images["swatch-red"])))
        assert red.payload[SYSTEM_KEY]["colors"] == dominant_colors(stored)
        assert red.payload[SYSTEM_KEY]["image_key"] == f"{APP}/images/swatch-red.jpg"
        assert await index.count(color_collection(APP)) == 9

        # Colour search now finds them, and filters as ever on the copied payload.
        colors = color_collection(APP)
        for name, rgb in RGB.items():
            query = color_vector([("%02x%02x%02x" % rgb, 100.0)])
            hits = await index.search(colors, query, limit=1, filter=(AnyOf("brand", ("Old",)),))
            assert hits[0].im_name == f"swatch-{name}"

        # A re-run has nothing left to do but the item it cannot fix.
        again = await backfill_colors(APP, index, objects, FIELDS, page=4)
        assert (again.total, again.extracted, again.added, again.skipped) == (10, 0, 0, 9)
        assert [name for name, _ in again.failed] == ["lost"]
    finally:
        await index.stop()
