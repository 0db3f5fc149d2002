"""Catalog-fitted projections: learned whitening, PCA-whitening, storage; synthetic views."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from magpie.embedding.augment import augment, views
from magpie.embedding.projection import (
    Projection,
    ProjectionError,
    fit_learned_whitening,
    fit_on_catalog,
    fit_pca_whitening,
)

pytestmark = pytest.mark.unit


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nuisance_data(seed: int = 0, n: int = 300, d: int = 32, k: int = 4):
    """Items that differ a little in 8 signal dims; their views vary a lot in 8 nuisance dims
    (the way a background or a crop moves a real embedding) and a little everywhere."""
    rng = np.random.default_rng(seed)
    signal, nuisance = np.arange(8), np.arange(8, 16)

    def view(centres: np.ndarray) -> np.ndarray:
        x = centres + 0.03 * rng.normal(size=centres.shape)
        x[:, nuisance] += 2.0 * rng.normal(size=(len(centres), len(nuisance)))
        return unit(x + 3.0)  # offset: like pooled ReLU features, never centred

    centres = np.zeros((n, d))
    centres[:, signal] = 0.25 * rng.normal(size=(n, len(signal)))
    catalog = unit(centres + 3.0)
    return catalog, np.concatenate([view(centres) for _ in range(k)]), view(centres)


def recall_at_1(catalog: np.ndarray, queries: np.ndarray) -> float:
    return float(((queries @ catalog.T).argmax(axis=1) == np.arange(len(queries))).mean())


def test_learned_whitening_ignores_what_views_of_one_item_vary_in() -> None:
    catalog, item_views, queries = nuisance_data()
    raw = recall_at_1(catalog, queries)
    projection = fit_learned_whitening(catalog, item_views, dims=16)
    projected = recall_at_1(projection.apply(catalog), projection.apply(queries))
    assert raw < 0.7 and projected > 0.95, (raw, projected)
    # PCA-whitening knows no views: it keeps the nuisance, which dominates the variance.
    pca = fit_pca_whitening(catalog, dims=16)
    assert recall_at_1(pca.apply(catalog), pca.apply(queries)) < 0.5


def test_projected_vectors_are_unit_float32_of_the_asked_dimension() -> None:
    catalog, item_views, queries = nuisance_data(n=60)
    projection = fit_learned_whitening(catalog, item_views, dims=10)
    out = projection.apply(queries)
    assert out.shape == (60, 10) and out.dtype == np.float32 and projection.dim == 10
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert projection.apply(queries[0]).shape == (10,)
    np.testing.assert_allclose(projection.apply(queries[0]), out[0], atol=1e-6)
    # Never more directions than the catalog has items to tell apart.
    assert fit_learned_whitening(catalog[:5], item_views[:5], dims=10).dim == 4


def test_pca_whitening_without_shrinkage_whitens_the_catalog() -> None:
    rng = np.random.default_rng(3)
    catalog = rng.normal(size=(500, 12)) * np.linspace(0.1, 5, 12) + 2.0
    projection = fit_pca_whitening(catalog, dims=12, shrink=0.0)
    centred = (catalog - projection.mean) @ projection.matrix  # before the final L2
    np.testing.assert_allclose(np.cov(centred.T, bias=True), np.eye(12), atol=1e-3)


def test_a_projection_round_trips_through_bytes() -> None:
    catalog, item_views, _ = nuisance_data(n=50)
    projection = fit_learned_whitening(catalog, item_views, dims=8)
    again = Projection.from_bytes(projection.to_bytes())
    assert again.kind == "learned-whitening" and again.digest == projection.digest
    np.testing.assert_array_equal(again.matrix, projection.matrix)
    np.testing.assert_array_equal(again.apply(catalog), projection.apply(catalog))
    assert fit_pca_whitening(catalog, dims=8).digest != projection.digest


@pytest.mark.parametrize("blob", [b"", b"not an npz", b"PK\x03\x04broken"])
def test_garbage_is_no_projection(blob: bytes) -> None:
    with pytest.raises(ProjectionError, match="not a stored projection"):
        Projection.from_bytes(blob)


def test_bad_shapes_are_refused_with_the_reason() -> None:
    catalog, item_views, _ = nuisance_data(n=20)
    with pytest.raises(ProjectionError, match=r"views must be \(k \* 20, 32\)"):
        fit_learned_whitening(catalog, item_views[:7])
    with pytest.raises(ProjectionError, match="need a"):
        fit_pca_whitening(catalog[:1])
    projection = fit_pca_whitening(catalog, dims=4)
    with pytest.raises(ProjectionError, match="dimension 16 given to a projection fitted on "
                                              "dimension 32"):
        projection.apply(catalog[:, :16])


def product(seed: int) -> Image.Image:
    """A product shot: a coloured shape on a white studio background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 80), "white")
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    box = [int(rng.integers(5, 30)), int(rng.integers(5, 25)), int(rng.integers(60, 90)),
           int(rng.integers(50, 75))]
    (ImageDraw.Draw(image).ellipse if seed % 2 else ImageDraw.Draw(image).rectangle)(
        box, fill=colour)
    return image


def test_views_are_seeded_rgb_and_differ_from_the_original() -> None:
    images = [product(i) for i in range(5)]
    first, again = views(images, 2, seed=7), views(images, 2, seed=7)
    assert len(first) == 10
    assert all(v.mode == "RGB" and 16 <= max(v.size) <= 600 for v in first)
    assert [v.tobytes() for v in first] == [v.tobytes() for v in again]
    assert [v.tobytes() for v in views(images, 2, seed=8)] != [v.tobytes() for v in first]
    original = np.asarray(images[0].resize((64, 64)), dtype=np.float32)
    changed = np.asarray(first[0].resize((64, 64)), dtype=np.float32)
    assert np.abs(original - changed).mean() > 5


def test_a_view_keeps_the_product_colour() -> None:
    # Whatever the background, the shape's own colour is still there in quantity.
    rng = np.random.default_rng(1)
    image = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(image).rectangle([20, 20, 80, 80], fill=(200, 30, 30))
    hits = 0
    for _ in range(10):
        pixels = np.asarray(augment(image, rng), dtype=np.int16)
        near = (np.abs(pixels - (200, 30, 30)).max(axis=2) < 70).mean()
        hits += near > 0.05
    assert hits >= 8


def _thumbnail_embed(calls: list[int]):  # noqa: ANN202
    def embed(images: list[Image.Image]) -> np.ndarray:
        # A real (if crude) descriptor: the 4x4 colour thumbnail.
        calls.append(len(images))
        return unit(np.stack([np.asarray(im.convert("RGB").resize((4, 4)), dtype=np.float32)
                              .ravel() + 1.0 for im in images]))
    return embed


def test_fit_on_catalog_embeds_the_catalog_and_its_views_in_chunks() -> None:
    calls: list[int] = []
    embed = _thumbnail_embed(calls)
    images = [product(i) for i in range(12)]
    projection = fit_on_catalog(embed, images, views_per_image=2, dims=6, min_items=10, chunk=5)
    assert calls == [5, 5, 2] * 3  # the catalog, then each round of views, 5 at a time
    assert projection.dim == 6 and projection.kind == "learned-whitening"
    assert projection.items == 12
    # Chunking changes nothing: the views are augment.views' own, in its order.
    whole = fit_learned_whitening(embed(images), embed(views(images, 2, seed=0)), 6)
    assert np.allclose(projection.matrix, whole.matrix, atol=1e-5)
    with pytest.raises(ProjectionError, match="too small"):
        fit_on_catalog(embed, images[:5], min_items=10)


def test_fit_on_catalog_takes_the_catalog_vectors_it_is_given() -> None:
    calls: list[int] = []
    embed = _thumbnail_embed(calls)
    images = [product(i) for i in range(12)]
    given = embed(images)
    calls.clear()
    projection = fit_on_catalog(embed, images, views_per_image=2, dims=6, min_items=10,
                                catalog=given)
    assert calls == [12, 12]  # only views were embedded
    assert np.allclose(projection.matrix, fit_on_catalog(embed, images, views_per_image=2, dims=6,
                                                         min_items=10).matrix, atol=1e-5)


def test_the_fitted_catalog_size_survives_storage_and_old_blobs_keep_their_digest() -> None:
    rng = np.random.default_rng(3)
    old = Projection(rng.normal(size=8).astype(np.float32),
                     rng.normal(size=(8, 4)).astype(np.float32), "learned-whitening")
    again = Projection.from_bytes(old.to_bytes())
    assert again.items == 0 and again.digest == old.digest
    sized = Projection(old.mean, old.matrix, old.kind, 250)
    assert Projection.from_bytes(sized.to_bytes()).items == 250 and sized.digest != old.digest
