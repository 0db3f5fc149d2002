"""Colour vectors: an item's dominant colours (extracted at ingest) as a soft colour histogram.

Each colour is spread over a fixed palette of 125 colours (a 5-level RGB grid) with a
Gaussian kernel in CIELAB, where distance follows perceived difference; an item's vector is
the rank-weighted sum over its dominant colours, unit length. The cosine of two such vectors
is a smoothed, weighted colour overlap, so a nearest-neighbour search over them ranks items
by how much of the query colour they show. The vectors live in a second, small collection
per application (`<app_id>.colors`), which keeps colour search an ANN query that filters
like any other.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COLOR_SUFFIX = ".colors"
_LEVELS = (0, 64, 128, 192, 255)
SIGMA_LAB = 18.0  # about the distance between neighbouring palette colours
# dominant_colors lists colours most frequent first without their shares: assumed shares.
RANK_WEIGHTS = (0.4, 0.25, 0.15, 0.12, 0.08)


def color_collection(app_id: str) -> str:
    """The collection holding an application's colour vectors."""
    return app_id + COLOR_SUFFIX


def hex_to_rgb(hex_color: str) -> tuple[int, int, int]:
    """`RRGGBB` (or `#RRGGBB`) as three 0-255 ints."""
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB rows (0-255) to CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805],
                             [0.2126, 0.7152, 0.0722],
                             [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE = srgb_to_lab(np.array([(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS]))
COLOR_DIM = len(_PALETTE)


def _spread(rgb: np.ndarray) -> np.ndarray:
    """Each colour as weights over the palette, summing to 1."""
    d2 = ((srgb_to_lab(rgb)[:, None, :] - _PALETTE[None, :, :]) ** 2).sum(axis=2)
    # Shifted by each row's minimum so that no row underflows to all zeros.
    w = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / (2 * SIGMA_LAB ** 2))
    return w / w.sum(axis=1, keepdims=True)


def color_vector(colors: Sequence[tuple[str, float]]) -> list[float] | None:
    """The unit vector of weighted colours (hex, weight); None when there are none."""
    if not colors:
        return None
    rgb = np.array([hex_to_rgb(h) for h, _ in colors])
    weights = np.array([w for _, w in colors], dtype=np.float64)
    v = weights @ _spread(rgb)
    norm = np.linalg.norm(v)
    return (v / norm).astype(np.float32).tolist() if norm > 0 else None


def item_color_vector(hex_colors: Sequence[str]) -> list[float] | None:
    """An item's colour vector from its dominant colours, most frequent first."""
    return color_vector([(h, w) for h, w in zip(hex_colors, RANK_WEIGHTS) if _valid(h)])


def _valid(hex_color: object) -> bool:
    if not isinstance(hex_color, str) or len(hex_color.lstrip("#")) != 6:
        return False
    try:
        hex_to_rgb(hex_color)
    except ValueError:
        return False
    return True
