"""Border trimming in Pillow's C loops finds exactly the box the plain numpy definition does."""
import numpy as np
import pytest
from PIL import Image

from magpie.embedding.models.preprocess import TRIM_TOLERANCE, border_colour, trim_borders

pytestmark = pytest.mark.unit


def reference_box(rgb: Image.Image, tolerance: int = TRIM_TOLERANCE) -> tuple[int, int, int, int]:
    """The definition: rows and columns holding a pixel with any channel more than
    `tolerance` levels from the median border colour (on the reduced copy for big images)."""
    step = max(1, max(rgb.size) // 256)
    pixels = np.asarray(rgb.reduce(step) if step > 1 else rgb)
    if min(pixels.shape[:2]) < 3:
        return (0, 0, *rgb.size)
    far = (np.abs(pixels.astype(np.int16) - border_colour(pixels).astype(np.int16)) > tolerance).any(axis=2)
    rows, cols = np.nonzero(far.any(axis=1))[0], np.nonzero(far.any(axis=0))[0]
    if len(rows) == 0 or rows[-1] + 1 - rows[0] < 4 or cols[-1] + 1 - cols[0] < 4:
        return (0, 0, *rgb.size)
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if step > 1:
        top, left = max(0, (top - 1) * step), max(0, (left - 1) * step)
        bottom, right = min(rgb.height, (bottom + 1) * step), min(rgb.width, (right + 1) * step)
    return left, top, right, bottom


def noisy_product(rng: np.random.Generator) -> Image.Image:
    height, width = (int(v) for v in rng.integers(3, 900, 2))
    pixels = np.ones((height, width, 3)) * rng.integers(0, 256, 3)
    pixels += rng.normal(0, rng.uniform(0, 10), (height, width, 3))  # sensor or JPEG noise
    y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
    pixels[y:y + int(rng.integers(1, height + 1)), x:x + int(rng.integers(1, width + 1))] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", range(12))
def test_trim_matches_the_numpy_definition(seed):
    rng = np.random.default_rng(seed)
    for _ in range(15):
        image = noisy_product(rng)
        trimmed = trim_borders(image)
        expected = image.crop(reference_box(image))
        assert trimmed.size == expected.size and trimmed.tobytes() == expected.tobytes()
