"""Image embeddings from any sentence-transformers model that accepts images (e.g. CLIP).

`sentence-transformers` is an optional dependency, imported only when such a model is
built. The model comes from a local folder (a `SentenceTransformer.save()` output), or
from a hub the user can reach; with a local folder nothing is looked up online.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from magpie.embedding.models.preprocess import to_rgb

if TYPE_CHECKING:
    from PIL.Image import Image


class SentenceTransformerImageEmbedder:
    """An ImageEmbedder over a sentence-transformers model with an image modality."""

    def __init__(self, model_name_or_path: str | Path, device: str = "cpu",
                 batch_size: int = 32, **model_kwargs: Any) -> None:
        try:
            import sentence_transformers
        except ImportError as exc:
            raise ModuleNotFoundError(
                "sentence-transformers is not installed: pip install sentence-transformers "
                "(after torch==2.13.0, so that pip keeps the CPU build)") from exc
        source = str(model_name_or_path)
        local = Path(source).expanduser().is_dir()
        if local:
            source = str(Path(source).expanduser().resolve())
            # A local folder must not fall back to the network when a file is missing.
            model_kwargs.setdefault("local_files_only", True)
        self._model = sentence_transformers.SentenceTransformer(
            source, device=device, **model_kwargs)
        supports = getattr(self._model, "supports", None)
        if supports is not None and not supports("image"):
            raise ValueError(f"{model_name_or_path} does not embed images "
                             f"(modalities: {getattr(self._model, 'modalities', '?')})")
        self.batch_size = batch_size
        self.name = Path(source).name if local else source
        # The vector space changes with the weights; the path or hub id is the best handle
        # without hashing gigabytes, the library version covers its pre/post-processing.
        tag = hashlib.sha256(source.encode()).hexdigest()[:8]
        self.version = f"st{sentence_transformers.__version__}-{tag}"
        self.dim = self._dimension()

    def _dimension(self) -> int:
        for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            getter = getattr(self._model, attr, None)
            dim = getter() if getter else None
            if dim:
                return int(dim)
        # CLIP-style stacks may not report it: ask the model itself.
        from PIL import Image as PILImage

        return int(self.embed([PILImage.new("RGB", (32, 32), "white")]).shape[1])

    def embed(self, images: Sequence[Image]) -> np.ndarray:
        """A float32 array of shape (len(images), dim), each row of unit length."""
        if not images:
            return np.empty((0, getattr(self, "dim", 0)), dtype=np.float32)
        rgb = [to_rgb(image) for image in images]
        vectors = self._model.encode(rgb, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerImageEmbedder({self.name!r}, dim={self.dim})"
