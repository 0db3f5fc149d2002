"""Which embedding model serves each image type; models load lazily, once, thread-safe.

A model spec is one of:
- `efficientnet-lite0` (the default), `efficientnet-lite1`, `efficientnet-lite2`: packaged
  weights, exported once to ONNX under `cache_dir`, served by onnxruntime; borders trimmed,
  multi-stage GeM features (2,024-d for Lite0; see `models.efficientnet`). The version says
  graph and preprocessing, so a catalog embedded by an earlier graph is re-embedded by
  `magpie reindex`. Lite2 was no better on the retrieval benchmark at 2.5x the cost;
- `sentence-transformers:<name or folder>` (or `st:<...>`): any sentence-transformers model
  that embeds images, e.g. `st:/models/clip-ViT-B-32`.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magpie.common.image_types import DEFAULT_IMAGE_TYPE, IMAGE_TYPES
from magpie.common.ports.embedder import ImageEmbedder
from magpie.embedding.models.efficientnet import IMAGE_SIZES  # a dict: torch stays unloaded

DEFAULT_MODEL = "efficientnet-lite0"
_ST_PREFIXES = ("sentence-transformers:", "st:")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: which adapter, and what it loads."""

    kind: str  # "efficientnet" or "sentence-transformers"
    target: str  # the EfficientNet variant, or the sentence-transformers name/folder

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """The spec of `spec`; raises ValueError for one no adapter serves."""
        text = spec.strip()
        for prefix in _ST_PREFIXES:
            if text.startswith(prefix) and text[len(prefix):].strip():
                return cls("sentence-transformers", text[len(prefix):].strip())
        if text in IMAGE_SIZES:
            return cls("efficientnet", text)
        raise ValueError(f"unknown model spec {spec!r}: use one of {', '.join(IMAGE_SIZES)} "
                         f"or 'sentence-transformers:<name or folder>'")


Loader = Callable[[ModelSpec], ImageEmbedder]


def default_loader(cache_dir: Path, threads: int | None = None) -> Loader:
    """A loader building the real adapters, exporting EfficientNet into `cache_dir`."""

    def load(spec: ModelSpec) -> ImageEmbedder:
        if spec.kind == "efficientnet":
            from magpie.embedding.models.efficientnet import load_efficientnet

            return load_efficientnet(Path(cache_dir), spec.target, threads=threads)
        from magpie.embedding.models.sentence import SentenceTransformerImageEmbedder

        return SentenceTransformerImageEmbedder(spec.target)

    return load


class ModelRegistry:
    """Maps image types to embedders, each model built on first use and shared."""

    def __init__(self, cache_dir: Path, default_model: str = DEFAULT_MODEL,
                 per_image_type: Mapping[str, str] | None = None, threads: int | None = None,
                 loader: Loader | None = None) -> None:
        unknown = set(per_image_type or {}) - set(IMAGE_TYPES)
        if unknown:
            raise ValueError(f"unknown image types {sorted(unknown)}; known: {list(IMAGE_TYPES)}")
        # Parse every spec now so a bad setting fails at startup, not on the first image.
        ModelSpec.parse(default_model)
        self._specs = {t: ModelSpec.parse((per_image_type or {}).get(t, default_model))
                       for t in IMAGE_TYPES}
        self._load = loader or default_loader(Path(cache_dir), threads)
        self._models: dict[ModelSpec, ImageEmbedder] = {}
        self._locks: dict[ModelSpec, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, loader: Loader | None = None) -> ModelRegistry:
        """A registry from Settings: `embedding_model`, `embedding_models`, `data_dir`/models."""
        cache = getattr(settings, "model_cache_dir", None) or Path(settings.data_dir) / "models"
        return cls(Path(cache), default_model=settings.embedding_model,
                   per_image_type=settings.embedding_models,
                   threads=settings.embedding_threads, loader=loader)

    def spec_for(self, image_type: str = DEFAULT_IMAGE_TYPE) -> ModelSpec:
        """The model spec serving `image_type`."""
        try:
            return self._specs[image_type]
        except KeyError:
            raise ValueError(f"unknown image type {image_type!r}; "
                             f"known: {list(IMAGE_TYPES)}") from None

    def get(self, image_type: str = DEFAULT_IMAGE_TYPE) -> ImageEmbedder:
        """The embedder of `image_type`, loaded on first call (blocking: call off the loop)."""
        spec = self.spec_for(image_type)
        model = self._models.get(spec)
        if model is not None:
            return model
        with self._guard:
            lock = self._locks.setdefault(spec, threading.Lock())
        # One lock per model: loading CLIP does not hold up a loaded EfficientNet.
        with lock:
            model = self._models.get(spec)
            if model is None:
                model = self._load(spec)
                self._models[spec] = model
        return model

    async def get_async(self, image_type: str = DEFAULT_IMAGE_TYPE) -> ImageEmbedder:
        """`get`, with a first load run in a worker thread so the event loop never blocks."""
        model = self._models.get(self.spec_for(image_type))
        return model if model is not None else await asyncio.to_thread(self.get, image_type)

    def preload(self) -> None:
        """Load every configured model now (e.g. in a startup thread)."""
        for image_type in self._specs:
            self.get(image_type)

    @property
    def loaded(self) -> dict[ModelSpec, ImageEmbedder]:
        """The models loaded so far."""
        return dict(self._models)
