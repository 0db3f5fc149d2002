"""EfficientNet-Lite0 with its packaged weights: ONNX export, cache, embeddings' behaviour."""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from magpie.embedding.models import appearance, efficientnet
from magpie.embedding.models.efficientnet import (
    ExportError,
    OnnxImageEmbedder,
    ensure_onnx,
    fit_pad,
    load_efficientnet,
    trim_borders,
)
from magpie.common.settings import Settings
from magpie.embedding.registry import ModelRegistry

pytestmark = pytest.mark.integration

# GeM-pooled maps of the stages ending at blocks 4, 7, 10, 14, 15 and of the head, concatenated.
STAGE_DIMS = (40, 80, 112, 192, 320, 1280)
NETWORK_DIM = sum(STAGE_DIMS)  # 2024
DIM = NETWORK_DIM + appearance.DIM  # 2408: the appearance descriptor appended


def scene(seed: int, size: tuple[int, int] = (320, 256)) -> Image.Image:
    """A structured synthetic picture: a gradient behind filled shapes and stripes."""
    rng = np.random.default_rng(seed)
    width, height = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = (np.linspace(0, 1, width)[None, :, None] if seed % 2
            else np.linspace(0, 1, height)[:, None, None])
    background = (c0 * (1 - ramp) + c1 * ramp) * np.ones((height, width, 1))
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1, y1 = x0 + int(rng.integers(30, 160)), y0 + int(rng.integers(30, 140))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour, outline=(0, 0, 0), width=3)
        elif kind == 2:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
        else:
            for k in range(0, x1 - x0, 8):
                draw.line([(x0 + k, y0), (x0 + k, y1)], fill=colour, width=3)
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def embedder(cache_dir: Path) -> OnnxImageEmbedder:
    return load_efficientnet(cache_dir)  # exports with the packaged weights, once


@pytest.fixture(scope="module")
def originals() -> list[Image.Image]:
    return [scene(seed) for seed in range(6)]


def test_vectors_are_unit_float32_rows_of_2408(embedder: OnnxImageEmbedder,
                                                originals: list[Image.Image]) -> None:
    vectors = embedder.embed(originals)
    assert vectors.shape == (6, DIM) and embedder.dim == DIM
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.name == "efficientnet-lite0"
    assert embedder.version.endswith(f"{efficientnet.PREPROCESSING}-{appearance.VERSION}")
    assert embedder.network_dim == NETWORK_DIM
    assert embedder.embed([]).shape == (0, DIM)


def test_embeddings_are_deterministic_and_batch_independent(
        embedder: OnnxImageEmbedder, originals: list[Image.Image]) -> None:
    batch = embedder.embed(originals)
    np.testing.assert_array_equal(batch, embedder.embed(originals))
    alone = np.concatenate([embedder.embed([image]) for image in originals[:2]])
    np.testing.assert_allclose(alone, batch[:2], atol=1e-5)


def test_onnx_agrees_with_the_torch_network(embedder: OnnxImageEmbedder,
                                            originals: list[Image.Image]) -> None:
    import torch

    pixels = embedder.pixels(originals)
    network = efficientnet._build_network("efficientnet-lite0", 224)
    with torch.inference_mode():
        expected = network(torch.from_numpy(pixels)).numpy()
    got = embedder.features(pixels)
    assert np.abs(expected - got).max() < 1e-4
    # Each stage's block is GeM-pooled, centred and normalised in the graph: unit length each.
    bounds = np.cumsum((0, *STAGE_DIMS))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        np.testing.assert_allclose(np.linalg.norm(got[:, lo:hi], axis=1), 1.0, atol=1e-4)
    # And the embedder's output is exactly that, normalised and weighted, then the appearance
    # descriptor of the same model input.
    expected[:, -efficientnet.HEAD_DIM:] *= efficientnet.HEAD_WEIGHT
    normalised = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    vectors = embedder.embed(originals)
    np.testing.assert_allclose(vectors[:, :NETWORK_DIM], normalised * appearance.NETWORK_WEIGHT,
                               atol=1e-4)
    described = np.stack([appearance.appearance(one) for one in pixels])
    np.testing.assert_allclose(vectors[:, NETWORK_DIM:], described, atol=1e-6)


def test_the_stage_features_are_gem_of_the_torch_maps(embedder: OnnxImageEmbedder,
                                                      originals: list[Image.Image]) -> None:
    import torch

    # Recompute the head's block from the raw torch network: GeM p=3, centred, L2.
    network = efficientnet._build_network("efficientnet-lite0", 224, pooling="avg").net
    pixels = embedder.pixels(originals[:2])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.inference_mode():
        head = network.extract_features(x).numpy()
    gem = np.power(np.power(np.maximum(head, 1e-6), 3).mean(axis=(2, 3)), 1 / 3)
    centred = gem - gem.mean(axis=1, keepdims=True)
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.features(pixels)[:, -1280:], expected, atol=1e-4)


def test_the_previous_graphs_are_still_available(cache_dir: Path, embedder: OnnxImageEmbedder,
                                                 originals: list[Image.Image]) -> None:
    network_only = load_efficientnet(cache_dir, appearance=False)
    assert network_only.dim == NETWORK_DIM and network_only.version.endswith(efficientnet.PREPROCESSING)
    assert network_only.head_weight == 1.0 and embedder.head_weight == efficientnet.HEAD_WEIGHT
    raw = network_only.features(network_only.pixels(originals[:2]))
    np.testing.assert_allclose(network_only.embed(originals[:2]),
                               raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    old = load_efficientnet(cache_dir, pooling="avg", trim=False, appearance=False)
    assert old.dim == 1280 and old.version.endswith("fitpad-border-v1")
    assert "-224-avg-" in old.path.name
    with pytest.raises(ValueError, match="unknown pooling"):
        ensure_onnx(cache_dir, pooling="max")


def test_the_registry_default_serves_the_new_version(cache_dir: Path,
                                                     embedder: OnnxImageEmbedder) -> None:
    served = ModelRegistry(cache_dir).get()
    assert (served.name, served.dim, served.version) == (embedder.name, DIM, embedder.version)
    # MAGPIE_EMBEDDING_THREADS reaches onnxruntime's intra-op pool.
    capped = ModelRegistry.from_settings(Settings(data_dir=cache_dir, model_cache_dir=cache_dir,
                                                  embedding_threads=1)).get()
    assert capped._session.get_session_options().intra_op_num_threads == 1
    assert served._session.get_session_options().intra_op_num_threads == efficientnet._cores()
    # A new graph and preprocessing: a new version, so `magpie reindex` re-embeds old catalogs.
    assert served.version.endswith("-trim-fitpad-border-v2-appearance-v3")


@pytest.mark.parametrize("transform", [
    pytest.param(lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), id="flipped"),
    pytest.param(lambda im: im.resize((im.width * 6 // 10, im.height * 6 // 10),
                                      Image.Resampling.BICUBIC), id="rescaled"),
    pytest.param(lambda im: jpeg(im, 50), id="jpeg50"),
    pytest.param(lambda im: jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                                 .resize((im.width // 2, im.height // 2)), 60), id="all-three"),
])
def test_an_altered_copy_is_nearest_to_its_original(
        embedder: OnnxImageEmbedder, originals: list[Image.Image], transform) -> None:
    catalog = embedder.embed(originals)
    queries = embedder.embed([transform(image) for image in originals])
    similarity = queries @ catalog.T
    # Each copy is nearer to its original than to the 5 other pictures.
    assert similarity.argmax(axis=1).tolist() == list(range(len(originals)))


def test_copies_score_near_one_and_other_pictures_well_below(
        embedder: OnnxImageEmbedder, originals: list[Image.Image]) -> None:
    # Recommendations drop near-duplicates at cosine 0.95: the centred stage features must
    # keep copies above that and different pictures well under it.
    catalog = embedder.embed(originals)
    halved = embedder.embed([im.resize((im.width // 2, im.height // 2)) for im in originals])
    assert (np.sum(catalog * halved, axis=1) >= 0.97).all()
    recoded = embedder.embed([jpeg(im, 60) for im in originals])
    assert (np.sum(catalog * recoded, axis=1) >= 0.94).all()
    others = (catalog @ catalog.T)[np.triu_indices(len(originals), 1)]
    assert others.max() < 0.9


def test_odd_images_are_handled(embedder: OnnxImageEmbedder) -> None:
    odd = [
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),  # fully transparent: white, not black
        Image.new("L", (1, 1), 128),
        Image.new("RGB", (1000, 10), "red"),
        scene(1).convert("P"),
    ]
    vectors = embedder.embed(odd)
    assert vectors.shape == (4, DIM) and np.isfinite(vectors).all()
    white = embedder.embed([Image.new("RGB", (64, 64), "white")])
    np.testing.assert_allclose(vectors[0], white[0], atol=1e-6)


def test_fit_pad_keeps_the_whole_image_and_pads_with_its_border() -> None:
    image = Image.new("RGB", (200, 100), (250, 250, 250))
    ImageDraw.Draw(image).rectangle([0, 40, 199, 60], fill=(255, 0, 0))  # spans full width
    pixels = fit_pad(image, 224)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert (pixels[:50] == 250).all()  # the pad has the border colour
    assert tuple(pixels[112, 0]) == tuple(pixels[112, 223]) == (255, 0, 0)  # nothing cropped


def test_trim_borders_crops_to_the_product_and_leaves_photos_alone() -> None:
    image = Image.new("RGB", (300, 200), (250, 250, 250))
    ImageDraw.Draw(image).rectangle([100, 50, 139, 129], fill=(20, 90, 200))
    assert trim_borders(image).size == (40, 80)
    noisy = trim_borders(jpeg(image, 60))  # ringing reaches at most into the next 8x8 block
    assert 40 <= noisy.width <= 56 and 80 <= noisy.height <= 96
    photo = scene(2)  # gradient background: its border is not one colour
    assert trim_borders(photo).size == photo.size
    assert trim_borders(Image.new("RGB", (50, 50), "white")).size == (50, 50)
    big = Image.new("RGB", (2000, 1500), "white")  # found on a reduced copy, then widened
    ImageDraw.Draw(big).rectangle([700, 400, 999, 899], fill=(0, 0, 0))
    box = trim_borders(big).size
    assert 300 <= box[0] <= 300 + 2 * 16 and 500 <= box[1] <= 500 + 2 * 16
    speck = Image.new("RGB", (50, 50), "white")
    speck.putpixel((10, 10), (0, 0, 0))
    assert trim_borders(speck).size == (50, 50)  # a speck is no product


def test_a_second_load_reuses_the_cache(cache_dir: Path, embedder: OnnxImageEmbedder,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("export_onnx was called although the model is cached")

    monkeypatch.setattr(efficientnet, "export_onnx", no_export)
    again = load_efficientnet(cache_dir)
    assert again.path == embedder.path and again.version == embedder.version
    image = scene(3)
    np.testing.assert_array_equal(again.embed([image]), embedder.embed([image]))
    assert embedder.path.name in [p.name for p in cache_dir.iterdir()]
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_cached_model_loads_without_torch(cache_dir: Path,
                                            embedder: OnnxImageEmbedder) -> None:
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["efficientnet_lite_pytorch"] = None
        from PIL import Image
        from magpie.embedding.models.efficientnet import load_efficientnet
        e = load_efficientnet(Path({str(cache_dir)!r}))
        assert str(e.path) == {str(embedder.path)!r}, e.path
        print(e.embed([Image.new("RGB", (50, 80), "navy")]).shape)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"(1, {DIM})"


def test_without_torch_the_newest_export_of_the_model_serves(
        cache_dir: Path, embedder: OnnxImageEmbedder, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A serving image without torch computes another key ("torch": "absent").
    monkeypatch.setattr(efficientnet, "_can_export", lambda: False)
    monkeypatch.setattr(efficientnet, "cache_key", lambda *a: "efficientnet-lite0-224-other")
    assert ensure_onnx(cache_dir) == embedder.path
    with pytest.raises(ModuleNotFoundError, match="exporting one needs torch"):
        ensure_onnx(tmp_path)


def test_a_failed_check_leaves_no_file_behind(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(efficientnet, "TOLERANCE", -1.0)  # no difference can pass
    with pytest.raises(ExportError, match="max abs diff"):
        ensure_onnx(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_cache_key_follows_model_and_size() -> None:
    key = efficientnet.cache_key("efficientnet-lite0")
    assert key.startswith("efficientnet-lite0-224-")
    assert key == efficientnet.cache_key("efficientnet-lite0", 224)
    assert key != efficientnet.cache_key("efficientnet-lite0", 256)
    assert key.startswith("efficientnet-lite0-224-stages-")
    assert efficientnet.cache_key("efficientnet-lite0", 224, "avg").startswith(
        "efficientnet-lite0-224-avg-")
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite model"):
        efficientnet.cache_key("efficientnet-b9")
