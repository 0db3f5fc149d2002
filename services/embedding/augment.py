"""Synthetic "photographed elsewhere" views of catalog images, to fit a projection on.

A view of a product image is cropped (50-100 % of the area), often rotated (up to 25 deg),
rescaled (64-320 px long side), cut out of its studio background and set on a flat, noisy,
gradient or cluttered one (a mosaic of other catalog images: real colours and textures that
are not this product), sometimes colour-jittered, blurred or mirrored, then JPEG-compressed
(q 30-90). What changes between an image and its views is what a search should ignore; the
learned whitening (`magpie.embedding.projection`) is fitted to ignore exactly that. Pure
functions of the image and a seeded generator: the same seed gives the same views.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from magpie.embedding.models.preprocess import TRIM_TOLERANCE, border_colour, to_rgb


def _background(rng: np.random.Generator, width: int, height: int,
                others: Sequence[Image.Image]) -> Image.Image:
    kind = int(rng.integers(4))
    if kind == 0:
        return Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
    if kind == 1:
        cell = int(rng.integers(4, 32))
        noise = rng.integers(0, 256, (max(1, height // cell), max(1, width // cell), 3))
        return Image.fromarray(noise.astype(np.uint8)).resize((width, height),
                                                              Image.Resampling.BICUBIC)
    if kind == 2 and others:
        mosaic = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
        short = min(width, height)
        for _ in range(int(rng.integers(3, 9))):
            other = to_rgb(others[int(rng.integers(len(others)))])
            side = int(rng.integers(max(8, short // 4), max(9, short)))
            tile = other.resize((side, side), Image.Resampling.BILINEAR)
            mosaic.paste(tile, (int(rng.integers(-side // 2, width)),
                                int(rng.integers(-side // 2, height))))
        return mosaic
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    return Image.fromarray((top * (1 - ramp) + bottom * ramp).repeat(width, 1).astype(np.uint8))


def _cut_out(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`mask` less the pixels of the image's own (studio) background colour."""
    pixels = np.asarray(image).astype(np.int16)
    colour = border_colour(pixels).astype(np.int16)
    subject = (np.abs(pixels - colour).max(axis=2) > TRIM_TOLERANCE).astype(np.uint8) * 255
    cut = np.minimum(np.asarray(mask), subject)
    return Image.fromarray(cut).filter(ImageFilter.GaussianBlur(0.7))


def augment(image: Image.Image, rng: np.random.Generator,
            others: Sequence[Image.Image] = ()) -> Image.Image:
    """One random view of `image` as an RGB image (see the module docstring)."""
    im = to_rgb(image)
    width, height = im.size
    area, aspect = rng.uniform(0.5, 1.0), np.exp(rng.uniform(-0.3, 0.3))
    crop_w = int(min(width, max(4, round(width * np.sqrt(area * aspect)))))
    crop_h = int(min(height, max(4, round(height * np.sqrt(area / aspect)))))
    x, y = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    im = im.crop((x, y, x + crop_w, y + crop_h))
    mask = Image.new("L", im.size, 255)
    if rng.random() < 0.8:
        angle = float(rng.uniform(-25, 25))
        # The mask turns with the image, so the corners it uncovers show the new background.
        im = im.rotate(angle, Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    scale = int(rng.integers(64, 321)) / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im, mask = im.resize(size, Image.Resampling.BICUBIC), mask.resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.7:
        mask = _cut_out(im, mask)
    grow = rng.uniform(1.0, 1.8)
    bg_w = max(im.width, int(im.width * grow * rng.uniform(0.85, 1.2)))
    bg_h = max(im.height, int(im.height * grow))
    out = _background(rng, bg_w, bg_h, others)
    out.paste(im, (int(rng.integers(0, bg_w - im.width + 1)),
                   int(rng.integers(0, bg_h - im.height + 1))), mask)
    if rng.random() < 0.5:
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.4:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < 0.3:
        out = ImageOps.mirror(out)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=int(rng.integers(30, 91)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def views(images: Sequence[Image.Image], per_image: int, seed: int = 0) -> list[Image.Image]:
    """`per_image` views of every image, view-major: view j of image i is at j * n + i."""
    rng = np.random.default_rng(seed)
    return [augment(image, rng, images) for _ in range(per_image) for image in images]
