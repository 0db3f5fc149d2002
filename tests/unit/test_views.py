"""Upload search views: which pictures get crops, and how the views' results merge."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from magpie.common.ports.index import Hit
from magpie.search.views import VIEW_FRACTION, VIEW_GRID, VIEW_MARGIN, merge_views, query_views

pytestmark = pytest.mark.unit


def product_shot() -> Image.Image:
    image = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(image).ellipse((100, 50, 200, 150), fill="red")
    return image


def photo() -> Image.Image:
    rng = np.random.default_rng(0)  # clutter reaches every edge: nothing to trim
    return Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))


def test_a_product_shot_is_searched_whole():
    image = product_shot()
    assert query_views(image) == [image]


def test_a_photo_is_searched_whole_and_in_overlapping_crops():
    image = photo()
    views = query_views(image)
    assert views[0] is image and len(views) == 1 + VIEW_GRID ** 2
    crop = (round(300 * VIEW_FRACTION), round(200 * VIEW_FRACTION))
    assert all(v.size == crop for v in views[1:])
    # The corners of the grid are the picture's corners.
    assert views[1].tobytes() == image.crop((0, 0, *crop)).tobytes()
    assert views[-1].tobytes() == image.crop((300 - crop[0], 200 - crop[1], 300, 200)).tobytes()


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(name, score) for name, score in pairs]


def test_crops_that_do_not_beat_the_whole_picture_change_nothing():
    whole = hits(("a", 0.80), ("b", 0.70))
    crop = hits(("c", 0.80 + VIEW_MARGIN / 2), ("b", 0.79))
    assert merge_views([whole, crop]) is whole


def test_a_better_crop_merges_every_view_at_its_best_score():
    whole = hits(("a", 0.80), ("b", 0.70))
    crops = [hits(("c", 0.90), ("b", 0.75)), hits(("a", 0.60), ("d", 0.50))]
    merged = {h.im_name: h.score for h in merge_views([whole, *crops])}
    assert merged == {"a": 0.80, "b": 0.75, "c": 0.90, "d": 0.50}


def test_no_results_stay_no_results():
    assert merge_views([[], [], []]) == []
    assert merge_views([hits(("a", 0.5))]) == hits(("a", 0.5))
