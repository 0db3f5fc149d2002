"""Preprocessing shared by the image embedders: RGB on white, uniform borders trimmed, the
whole picture fitted into the square input and padded with its own border colour (why: see
`efficientnet`'s docstring)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

TRIM_TOLERANCE = 12  # levels: JPEG noise on a flat studio background stays under this


def to_rgb(image: Image) -> Image:
    """The image as RGB, transparent pixels composited onto white."""
    from PIL import Image as PILImage

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """The median colour of the outermost rows and columns of an (h, w, 3) array."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def trim_borders(image: Image, tolerance: int = TRIM_TOLERANCE) -> Image:
    """The RGB image cropped to the box of pixels that differ from its border colour."""
    from PIL import Image as PILImage
    from PIL import ImageChops

    rgb = to_rgb(image)
    # The box is found on a copy of at most ~256 px (box-filtered, so thin lines still show):
    # scanning a full-size photo cost more than the model; the box is then widened by a step.
    step = max(1, max(rgb.size) // 256)
    small = rgb.reduce(step) if step > 1 else rgb
    if small.width < 3 or small.height < 3:
        return rgb
    # In Pillow's C loops rather than numpy's (which cost ~3 ms for a 500 px picture, a third
    # of the model): a pixel differs when any channel is more than `tolerance` levels off.
    border = tuple(int(v) for v in border_colour(np.asarray(small)))  # truncated, as before
    diff = ImageChops.difference(small, PILImage.new("RGB", small.size, border))
    box = diff.point(([0] * (tolerance + 1) + [255] * (255 - tolerance)) * 3).getbbox()
    if box is None:
        return rgb  # a flat image: nothing to trim to
    left, top, right, bottom = box
    if bottom - top < 4 or right - left < 4:
        return rgb  # a speck of noise is no product
    if step > 1:
        top, left = max(0, (top - 1) * step), max(0, (left - 1) * step)
        bottom, right = min(rgb.height, (bottom + 1) * step), min(rgb.width, (right + 1) * step)
    return rgb.crop((int(left), int(top), int(right), int(bottom)))


def fit_pad(image: Image, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 array: the whole image fitted in, padded with its border colour."""
    from PIL import Image as PILImage

    rgb = to_rgb(image)
    width, height = rgb.size
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pixels = np.asarray(rgb.resize((new_w, new_h), PILImage.Resampling.BILINEAR))
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = border_colour(pixels).astype(np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = pixels
    return out
