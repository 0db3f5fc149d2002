"""The appearance descriptor fused with the network's features (colour and rough layout)."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from magpie.embedding.models import appearance as ap
from magpie.embedding.models.preprocess import fit_pad, trim_borders

pytestmark = pytest.mark.unit


def product(colour: str, size=(120, 90), box=(30, 20, 90, 70)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    # An ellipse: a trimmed rectangle would fill the canvas and leave no outline to describe.
    ImageDraw.Draw(image).ellipse(box, fill=colour)
    return image


def described(image: Image.Image) -> np.ndarray:
    """As the embedder describes a picture: from its model input (trimmed, fitted, padded)."""
    return ap.appearance(fit_pad(trim_borders(image), 224))


def test_the_weights_keep_a_fused_vector_of_unit_length():
    weights = (ap.NETWORK_WEIGHT, ap.LAYOUT_WEIGHT, ap.PALETTE_WEIGHT, ap.SHAPE_WEIGHT)
    assert sum(w * w for w in weights) == pytest.approx(1)
    red = described(product("red"))
    assert red.shape == (ap.DIM,) == (384,) and red.dtype == np.float32
    parts = np.split(red, np.cumsum([ap.LAYOUT_DIM, ap.PALETTE_DIM]))
    for part, weight in zip(parts, weights[1:]):
        assert np.linalg.norm(part) == pytest.approx(weight, abs=1e-6)


def test_the_palette_leaves_out_the_white_background():
    # The same red object on a small or a large white background: the same palette.
    small = ap.palette(np.asarray(product("red", (80, 80), (10, 10, 70, 70))))
    large = ap.palette(np.asarray(product("red", (400, 400), (180, 180, 220, 220))))
    np.testing.assert_allclose(small, large, atol=1e-6)
    assert not ap.palette(np.full((64, 64, 3), 255, np.uint8)).any()  # all white: no palette


def test_colour_moves_the_palette_and_position_moves_the_layout():
    red, blue = described(product("red")), described(product("blue"))
    colours = slice(ap.LAYOUT_DIM, ap.LAYOUT_DIM + ap.PALETTE_DIM)
    assert float(red[colours] @ blue[colours]) < 0.01  # no colour in common
    shapes = slice(ap.LAYOUT_DIM + ap.PALETTE_DIM, None)  # the same outline
    assert float(red[shapes] @ blue[shapes]) == pytest.approx(ap.SHAPE_WEIGHT ** 2, rel=0.05)
    canvas = np.full((64, 64, 3), 255, np.uint8)
    left, right = canvas.copy(), canvas.copy()
    left[20:44, 0:24] = (200, 30, 30)
    right[20:44, 40:64] = (200, 30, 30)
    cos = float(ap.layout(left) @ ap.layout(right))
    assert cos < 0.5 and float(ap.layout(left) @ ap.layout(left)) == pytest.approx(1)
    np.testing.assert_allclose(ap.palette(left), ap.palette(right), atol=1e-6)


def test_the_outline_follows_edges_not_colours():
    canvas = np.full((64, 64, 3), 255, np.uint8)
    wide, tall, green = canvas.copy(), canvas.copy(), canvas.copy()
    wide[24:40, 4:60] = (200, 30, 30)
    tall[4:60, 24:40] = (200, 30, 30)
    green[24:40, 4:60] = (30, 160, 30)  # the same bar in another colour and contrast
    assert float(ap.shape(wide) @ ap.shape(tall)) < 0.5
    np.testing.assert_allclose(ap.shape(wide), ap.shape(green), atol=1e-5)
    assert float(ap.shape(wide) @ ap.shape(wide)) == pytest.approx(1)


def test_a_flat_picture_has_no_layout_or_outline_and_never_nan():
    flat = np.full((64, 64, 3), 90, np.uint8)
    assert not ap.layout(flat).any() and not ap.shape(flat).any()
    white = described(Image.new("RGB", (64, 64), "white"))
    assert np.isfinite(white).all() and not white.any()


def test_fuse_scales_the_network_part_and_keeps_rows_unit():
    rng = np.random.default_rng(0)
    network = rng.random((3, 10)).astype(np.float32)
    network /= np.linalg.norm(network, axis=1, keepdims=True)
    colours = np.stack([described(product(c)) for c in ("red", "green", "navy")])
    fused = ap.fuse(network, colours)
    assert fused.shape == (3, 10 + ap.DIM) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(fused[:, :10], network * ap.NETWORK_WEIGHT, atol=1e-6)
    # A white picture adds nothing: the row is the network's vector alone.
    alone = ap.fuse(network[:1], np.zeros((1, ap.DIM), np.float32))
    np.testing.assert_allclose(alone[0, :10], network[0], atol=1e-6)
