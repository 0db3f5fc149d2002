"""Decoding, validation and normalisation of downloaded images (all in memory)."""
import io

import pytest
from PIL import Image

from magpie.common.errors import UnsupportedDimension, UnsupportedFormat
from magpie.image_fetch.images import (
    KEPT_AS_IS,
    KEPT_MAX_BYTES,
    content_hash,
    decode_and_normalise,
    make_thumbnail,
    open_stored,
)
from tests.fixtures.images import (
    HTML,
    SEED_FORMATS,
    bomb_png,
    encode,
    exif_rotated_jpeg,
    make_image,
    picture,
    transparent_png,
    truncated_jpeg,
)

pytestmark = pytest.mark.unit

EXPECTED_FORMAT = {"bmp": "BMP", "dib": "DIB", "jpeg": "JPEG", "jpg": "JPEG", "jpe": "JPEG",
                   "jp2": "JPEG2000", "png": "PNG", "webp": "WEBP", "pbm": "PPM", "pgm": "PPM",
                   "ppm": "PPM", "sr": "SUN", "ras": "SUN", "tiff": "TIFF", "tif": "TIFF",
                   "gif": "GIF"}


def _close(a, b, tolerance=40):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("ext", sorted(SEED_FORMATS))
def test_every_seed_format_is_accepted(ext):
    out = decode_and_normalise(make_image(ext, (160, 120)))
    assert out.format == EXPECTED_FORMAT[ext]
    assert (out.width, out.height) == (160, 120)
    assert out.image.mode == "RGB" and out.image.size == (160, 120)
    assert out.warnings == []
    if ext not in ("pbm", "pgm"):  # colour survives except in the greyscale/bilevel formats
        assert _close(out.image.getpixel((5, 100)), (220, 30, 30))
        assert _close(out.image.getpixel((150, 100)), (30, 30, 220))
    stored = Image.open(io.BytesIO(out.stored))
    assert stored.format == (out.format if out.format in KEPT_AS_IS else "JPEG")
    assert out.stored_type == Image.MIME[stored.format]


def test_identified_by_content_not_by_name():
    # A PNG is a PNG whatever the URL said; the function never sees a file name anyway.
    assert decode_and_normalise(make_image("png", (120, 120))).format == "PNG"
    assert decode_and_normalise(make_image("ras", (120, 120))).format == "SUN"


def test_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (100, 100), c).convert("P") for c in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert _close(decode_and_normalise(data).image.getpixel((50, 50)), (255, 0, 0))


def test_exif_orientation_is_applied():
    out = decode_and_normalise(exif_rotated_jpeg((160, 80), orientation=6))
    assert out.image.size == (80, 160)
    assert (out.width, out.height) == (80, 160)
    # Rotated 90 degrees clockwise: the red left half is now the top.
    assert _close(out.image.getpixel((40, 10)), (220, 30, 30))
    assert _close(out.image.getpixel((40, 150)), (30, 30, 220))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode):
    out = decode_and_normalise(transparent_png((120, 100), mode=mode))
    assert out.image.mode == "RGB"
    assert out.image.getpixel((60, 60)) == (255, 255, 255)
    assert _close(out.image.getpixel((5, 5)), (0, 0, 0), tolerance=5)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    im = Image.new("I;16", (64, 64), 32768)
    out = decode_and_normalise(encode(im, "PNG"))
    assert _close(out.image.getpixel((1, 1)), (128, 128, 128), tolerance=2)


def test_cmyk_jpeg_becomes_rgb():
    out = decode_and_normalise(encode(picture((120, 120)).convert("CMYK"), "JPEG"))
    assert out.image.mode == "RGB" and _close(out.image.getpixel((5, 100)), (220, 30, 30))


def test_large_images_are_downscaled_with_their_aspect_kept():
    out = decode_and_normalise(make_image("png", (3000, 1500)), max_side_out=1024)
    assert (out.width, out.height) == (3000, 1500)
    assert out.image.size == (1024, 512)
    assert Image.open(io.BytesIO(out.stored)).size == (1024, 512)
    assert Image.open(io.BytesIO(make_thumbnail(out.stored, 256))).size == (256, 128)


def test_big_jpegs_decode_reduced_but_report_their_true_size():
    out = decode_and_normalise(make_image("jpeg", (4000, 3000)))
    assert (out.width, out.height) == (4000, 3000)
    assert out.image.size == (1024, 768)


def test_small_images_are_not_upscaled():
    out = decode_and_normalise(make_image("png", (200, 150)))
    assert out.image.size == (200, 150)
    assert Image.open(io.BytesIO(make_thumbnail(out.stored))).size == (200, 150)


@pytest.mark.parametrize("data", [
    pytest.param(lambda: make_image("jpeg", (640, 480)), id="JPEG"),
    pytest.param(lambda: make_image("webp", (640, 480)), id="WebP"),
    pytest.param(lambda: transparent_png((120, 100)), id="PNG with alpha"),
    pytest.param(lambda: transparent_png((120, 100), mode="P"), id="palette PNG"),
    pytest.param(lambda: encode(picture((120, 120)).convert("L"), "JPEG"), id="greyscale JPEG"),
])
def test_web_formats_are_kept_as_they_came(data):
    raw = data()
    out = decode_and_normalise(raw)
    assert out.as_stored and out.stored == raw
    assert out.stored_pixels() is out.image and out.image.mode == "RGB"
    # Every reader decodes the stored copy to exactly the pixels ingest embedded.
    assert open_stored(out.stored).tobytes() == out.image.tobytes()


def _padded_png() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "x" * (KEPT_MAX_BYTES + 1))  # stored uncompressed (tEXt)
    return encode(picture((120, 120)), "PNG", pnginfo=info)


@pytest.mark.parametrize("data", [
    pytest.param(_padded_png, id="small picture, big file"),
    pytest.param(lambda: make_image("gif", (640, 480)), id="GIF"),
    pytest.param(lambda: make_image("tiff", (640, 480)), id="TIFF"),
    pytest.param(lambda: make_image("jpeg", (2000, 1000)), id="over the stored size"),
    pytest.param(lambda: exif_rotated_jpeg((160, 80), orientation=6), id="EXIF-rotated"),
    pytest.param(lambda: encode(picture((120, 120)).convert("CMYK"), "JPEG"), id="CMYK"),
])
def test_other_images_are_re_encoded_and_read_back_as_stored(data):
    raw = data()
    out = decode_and_normalise(raw)
    assert not out.as_stored and out.stored != raw and out.stored_type == "image/jpeg"
    stored = out.stored_pixels()
    # The pixels embedding gets are those of the stored copy, not the pre-encoding ones.
    assert stored.tobytes() == Image.open(io.BytesIO(out.stored)).tobytes()
    assert stored.mode == "RGB" and stored.size == out.image.size


def test_thumbnail_of_a_big_stored_image_keeps_its_aspect():
    thumb = make_thumbnail(decode_and_normalise(make_image("jpeg", (1024, 640))).stored, 256)
    im = Image.open(io.BytesIO(thumb))
    assert im.format == "JPEG" and im.size == (256, 160)


def test_content_hash_is_of_the_original_bytes_and_stable():
    data = make_image("webp", (120, 120))
    first, second = decode_and_normalise(data), decode_and_normalise(data)
    assert first.content_hash == second.content_hash == content_hash(data)
    assert len(first.content_hash) == 64
    assert decode_and_normalise(make_image("png", (120, 120))).content_hash != first.content_hash


def test_too_small_is_unsupported_dimension():
    with pytest.raises(UnsupportedDimension) as caught:
        decode_and_normalise(make_image("png", (16, 16)))
    assert caught.value.code == 203
    assert "16x16" in caught.value.detail and "32 px" in caught.value.detail
    with pytest.raises(UnsupportedDimension):
        decode_and_normalise(make_image("png", (400, 20)))


def test_under_the_recommended_size_is_accepted_with_a_warning():
    out = decode_and_normalise(make_image("png", (64, 64)))
    assert out.image.size == (64, 64)
    assert len(out.warnings) == 1 and "64x64" in out.warnings[0] and "100 px" in out.warnings[0]


@pytest.mark.parametrize(("data", "detail"), [
    (truncated_jpeg(), "truncated"),
    (HTML, "HTML, not an image"),
    (b"", "empty"),
    (b"\x00" * 1000, "not a recognised image"),
    (b'{"error": "not found"}', "JSON"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    (make_image("png")[:60], "image data is"),
])
def test_non_images_and_broken_images_are_unsupported_format(data, detail):
    with pytest.raises(UnsupportedFormat, match=detail) as caught:
        decode_and_normalise(data)
    assert caught.value.code == 202


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "SGI"])
def test_formats_outside_the_seed_list_are_named_and_refused(fmt):
    data = encode(Image.new("RGB", (64, 64), "red"), fmt)
    with pytest.raises(UnsupportedFormat, match=f"{fmt} images are not supported"):
        decode_and_normalise(data)


def test_decompression_bombs_are_refused_before_decoding():
    with pytest.raises(UnsupportedFormat, match="8000x8000 = 64,000,000 pixels, over the limit"):
        decode_and_normalise(bomb_png(8000, 8000))
    # Beyond Pillow's own hard limit its DecompressionBombError is caught too.
    with pytest.raises(UnsupportedFormat, match="too large to decode safely"):
        decode_and_normalise(bomb_png(100_000, 100_000))
    with pytest.raises(UnsupportedFormat, match="over the limit of 1,000"):
        decode_and_normalise(make_image("png", (100, 100)), max_pixels=1000)
