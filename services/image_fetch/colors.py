"""Dominant colours of an image, extracted once at ingest for colour search."""
from __future__ import annotations

from PIL import Image


def dominant_colors(image: Image.Image, k: int = 5) -> list[str]:
    """Up to `k` colours as RRGGBB hex, most frequent first.

    Median-cut quantisation on a 64 px copy: cheap, deterministic, and good enough to rank
    catalog items by colour distance.
    """
    small = image.convert("RGB")
    small.thumbnail((64, 64))
    quantised = small.quantize(colors=k, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    counts = sorted(quantised.getcolors() or [], reverse=True)
    return [f"{palette[i * 3]:02x}{palette[i * 3 + 1]:02x}{palette[i * 3 + 2]:02x}" for _, i in counts[:k]]
