"""ModelRegistry: spec parsing, per-type mapping, lazy thread-safe single loading."""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from magpie.embedding.registry import ModelRegistry, ModelSpec

pytestmark = pytest.mark.unit


class Loads:
    """A fake loader counting how often each spec is built."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[ModelSpec] = []
        self._lock = threading.Lock()

    def __call__(self, spec: ModelSpec) -> object:
        with self._lock:
            self.calls.append(spec)
        time.sleep(self.delay_s)
        return object()


def test_specs_parse() -> None:
    assert ModelSpec.parse("efficientnet-lite0") == ModelSpec("efficientnet", "efficientnet-lite0")
    assert ModelSpec.parse("st:/m/clip") == ModelSpec("sentence-transformers", "/m/clip")
    assert ModelSpec.parse("sentence-transformers:clip-ViT-B-32") == ModelSpec(
        "sentence-transformers", "clip-ViT-B-32")
    for bad in ("resnet50", "st:", "efficientnet-lite9", ""):
        with pytest.raises(ValueError, match="unknown model spec"):
            ModelSpec.parse(bad)


def test_types_map_to_models_and_share_them(tmp_path: Path) -> None:
    loads = Loads()
    registry = ModelRegistry(tmp_path, per_image_type={"fashion": "st:/m/clip"}, loader=loads)
    assert loads.calls == []  # nothing loads at construction
    general, furniture = registry.get("general"), registry.get("furniture")
    assert general is furniture  # same spec, one model
    assert registry.get("fashion") is not general
    assert registry.get() is general  # the default image type is "general"
    assert loads.calls == [ModelSpec("efficientnet", "efficientnet-lite0"),
                           ModelSpec("sentence-transformers", "/m/clip")]
    assert len(registry.loaded) == 2


def test_concurrent_first_calls_load_once(tmp_path: Path) -> None:
    loads = Loads(delay_s=0.2)
    registry = ModelRegistry(tmp_path, loader=loads)
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: registry.get("general"), range(8)))
    assert len(loads.calls) == 1
    assert all(model is models[0] for model in models)


def test_bad_settings_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image types"):
        ModelRegistry(tmp_path, per_image_type={"fashon": "efficientnet-lite0"})
    with pytest.raises(ValueError, match="unknown model spec"):
        ModelRegistry(tmp_path, per_image_type={"fashion": "vgg16"})
    with pytest.raises(ValueError, match="unknown model spec"):
        ModelRegistry(tmp_path, default_model="vgg16")
    with pytest.raises(ValueError, match="unknown image type"):
        ModelRegistry(tmp_path, loader=Loads()).get("cars")


async def test_get_async_loads_off_the_event_loop(tmp_path: Path) -> None:
    loads = Loads(delay_s=0.2)
    registry = ModelRegistry(tmp_path, loader=loads)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    model = await registry.get_async("furniture")
    assert ticks >= 5  # the loop ran while the model loaded
    await ticking
    assert await registry.get_async("general") is model and len(loads.calls) == 1


def test_from_settings(tmp_path: Path) -> None:
    settings = SimpleNamespace(data_dir=tmp_path, embedding_model="efficientnet-lite0",
                               embedding_models={"fashion": "st:/m/clip"}, embedding_threads=None)
    loads = Loads()
    registry = ModelRegistry.from_settings(settings, loader=loads)
    assert registry.spec_for("fashion") == ModelSpec("sentence-transformers", "/m/clip")
    assert registry.spec_for("general") == ModelSpec("efficientnet", "efficientnet-lite0")


def test_preload_loads_every_configured_model(tmp_path: Path) -> None:
    loads = Loads()
    ModelRegistry(tmp_path, per_image_type={"fashion": "efficientnet-lite1"},
                  loader=loads).preload()
    assert sorted(spec.target for spec in loads.calls) == ["efficientnet-lite0",
                                                           "efficientnet-lite1"]


def test_importing_the_registry_loads_no_framework() -> None:
    assert "magpie.embedding.registry" in sys.modules
    # Other tests in the same process may import them; check in a clean interpreter.
    import subprocess

    code = ("import sys, magpie.embedding.registry, magpie.embedding.batcher, "
            "magpie.embedding.models; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'sentence_transformers') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
