"""The image embedding port."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


class ImageEmbedder(Protocol):
    """Turns RGB images into L2-normalised vectors. CPU-bound and synchronous: callers run
    it off the event loop."""

    name: str
    version: str
    dim: int

    def embed(self, images: Sequence[Image]) -> np.ndarray:
        """A float32 array of shape (len(images), dim), each row of unit length."""
