"""The sentence-transformers image adapter, on a tiny randomly initialised CLIP saved locally.

No hub is reachable here, so the test builds its own CLIP-shaped model folder; the loading
code is the one a real `clip-ViT-B-32` folder goes through.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magpie.embedding.registry import ModelRegistry

pytestmark = pytest.mark.integration

pytest.importorskip(
    "sentence_transformers",
    reason="sentence-transformers is not installed (optional; "
           "pip install sentence-transformers after torch==2.13.0)")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizerFast,
    )

    root = tmp_path_factory.mktemp("clip")
    hf = root / "hf"
    hf.mkdir()
    tiny = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tiny, vocab_size=64, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tiny, image_size=32, patch_size=8),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(hf)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1,
             **{f"{c}</w>": i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}}
    (hf / "vocab.json").write_text(json.dumps(vocab))
    (hf / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizerFast(vocab_file=str(hf / "vocab.json"),
                                  merges_file=str(hf / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32},
                                crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(hf)
    folder = root / "tiny-clip"
    SentenceTransformer(modules=[Transformer(str(hf))], device="cpu").save(str(folder))
    return folder


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8))
            for i in range(4)] + [Image.new("RGBA", (20, 20), (0, 0, 0, 0))]


def test_a_local_clip_folder_embeds_images(clip_folder: Path,
                                           pictures: list[Image.Image]) -> None:
    from magpie.embedding.models.sentence import SentenceTransformerImageEmbedder

    embedder = SentenceTransformerImageEmbedder(clip_folder)
    assert embedder.name == "tiny-clip" and embedder.dim == 8
    assert embedder.version.startswith("st")
    vectors = embedder.embed(pictures)
    assert vectors.shape == (5, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(pictures), vectors, atol=1e-6)
    assert embedder.embed([]).shape == (0, 8)


def test_the_registry_serves_it_for_one_image_type(clip_folder: Path, tmp_path: Path,
                                                   pictures: list[Image.Image]) -> None:
    registry = ModelRegistry(tmp_path, per_image_type={"fashion": f"st:{clip_folder}"})
    fashion = registry.get("fashion")
    assert fashion.dim == 8
    assert fashion.embed(pictures[:2]).shape == (2, 8)
    assert list(tmp_path.iterdir()) == []  # the EfficientNet default was never loaded


def test_a_missing_folder_fails_without_a_network_call(tmp_path: Path) -> None:
    from magpie.embedding.models.sentence import SentenceTransformerImageEmbedder

    with pytest.raises(Exception):  # noqa: B017 - the library's error type varies by version
        SentenceTransformerImageEmbedder(tmp_path / "nothing-here", local_files_only=True)
