"""Decode, validate and normalise downloaded images (pure functions, CPU-bound: run in a thread)."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from magpie.common.errors import UnsupportedDimension, UnsupportedFormat

# Pillow's names for the seed's formats (.bmp .dib .jpeg .jpg .jpe .jp2 .png .webp .pbm .pgm
# .ppm .sr .ras .tiff .tif .gif). PBM/PGM/PPM all open as "PPM"; camera JPEGs with an MPF
# block come out of the JPEG opener as "MPO". Only these openers are tried, so exotic
# decoders (EPS hands the data to Ghostscript) never see merchant bytes.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "JPEG2000",
                                    "PPM", "SUN", "TIFF")
_FORMAT_NAMES = {"MPO": "JPEG"}
_SUPPORTED_TEXT = "BMP, DIB, GIF, JPEG, JPEG 2000, PNG, PBM/PGM/PPM, Sun raster, TIFF, WEBP"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ORIENTATION = 0x0112  # EXIF tag

# Formats stored as they came when no rotation or downscaling is needed, with their type.
KEPT_AS_IS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# ... and no bigger than this: a small picture padded with metadata is re-encoded instead.
KEPT_MAX_BYTES = 4 * 1024 * 1024
JPEG_QUALITY = 90
THUMB_QUALITY = 85
THUMB_SIDE = 256


@dataclass(slots=True)
class NormalisedImage:
    """A decoded image ready for storage and embedding.

    `width`/`height` are the source image's (after EXIF orientation). `stored` is what the
    store keeps (`stored_type`): the original bytes when they are a JPEG, PNG or WebP of at
    most `max_side_out` px needing no rotation, else an RGB JPEG of the image downscaled to
    that size. `image` is the RGB rendition; `as_stored` says it is exactly what
    `open_stored(stored)` gives.
    """

    image: Image.Image
    stored: bytes
    stored_type: str
    width: int
    height: int
    format: str
    content_hash: str
    warnings: list[str] = field(default_factory=list)
    as_stored: bool = False

    def stored_pixels(self) -> Image.Image:
        """The pixels of the stored copy: what reindex and a re-read of the store see."""
        if self.as_stored:
            return self.image
        # The re-encoded copy differs from the pre-encoding pixels by the JPEG round trip,
        # enough to move a vector (cosine 0.97 with itself).
        return open_stored(self.stored)


def open_stored(data: bytes, *, draft_side: int | None = None) -> Image.Image:
    """A stored copy decoded to RGB, transparency on white: how every reader sees it.

    `draft_side` lets libjpeg decode a JPEG at a reduced scale (for previews only).
    """
    image = _open(data)
    if draft_side is not None:
        image.draft("RGB", (draft_side, draft_side))
    image.load()
    return to_rgb(image)


def content_hash(data: bytes) -> str:
    """The sha256 hex digest of the original bytes, the identity of an image's content."""
    return hashlib.sha256(data).hexdigest()


def _describe(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "content is HTML, not an image"
    if head.startswith((b"<?xml", b"<svg")):
        return "content is XML/SVG, which is not a supported image format"
    if head.startswith((b"{", b"[")):
        return "content looks like JSON, not an image"
    # Outside the allowed set, name the format when Pillow knows it: a clearer message than
    # "unrecognised". Only the header is parsed; nothing is decoded.
    try:
        with Image.open(io.BytesIO(data)) as other:
            return f"{other.format} images are not supported (supported: {_SUPPORTED_TEXT})"
    except Exception:  # noqa: BLE001 - any failure just means "unknown"
        return f"content is not a recognised image (supported: {_SUPPORTED_TEXT})"


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)


def _identify(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Open and verify the header and structure; return (format, width, height)."""
    if not data:
        raise UnsupportedFormat("image is empty (0 bytes)")
    try:
        with _open(data) as probe:
            fmt, (width, height) = probe.format or "", probe.size
            if width * height > max_pixels:
                raise UnsupportedFormat(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (decompression bomb?)")
            probe.verify()  # checksums where the format has them (PNG CRCs)
    except UnsupportedFormat:
        raise
    except Image.DecompressionBombError as exc:
        raise UnsupportedFormat(f"image is too large to decode safely: {exc}") from None
    except Image.UnidentifiedImageError:
        raise UnsupportedFormat(_describe(data)) from None
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise all sorts on bad input
        raise UnsupportedFormat(f"image data is corrupt ({type(exc).__name__}: {exc})") from None
    return fmt, width, height


def _decode(data: bytes, fmt: str, max_side_out: int) -> tuple[Image.Image, bool, bool]:
    """Re-open (verify() leaves the image unusable), decode the first frame, apply EXIF
    orientation; also say whether that orientation swapped width and height, and whether
    the pixels are exactly the file's (no reduced decode, no orientation applied)."""
    try:
        im = _open(data)
        exact = True
        if fmt in ("JPEG", "MPO") and max(im.size) > 2 * max_side_out:
            # libjpeg can decode at 1/2, 1/4 or 1/8 scale: far less work for big photos.
            im.draft(None, (max_side_out, max_side_out))
            exact = False
        im.load()
        orientation = im.getexif().get(_ORIENTATION)
        if orientation in (None, 1):
            return im, False, exact
        return ImageOps.exif_transpose(im) or im, orientation in (5, 6, 7, 8), False
    except Image.DecompressionBombError as exc:
        raise UnsupportedFormat(f"image is too large to decode safely: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        kind = "truncated" if "truncated" in str(exc) else "corrupt"
        raise UnsupportedFormat(f"image data is {kind} ({fmt}: {exc})") from None


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float greyscale into L, by range rather than by clipping."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    low, high = im.getextrema()
    if im.mode == "F" and high <= 1.0:
        scale = 255.0  # float images usually hold 0..1
    elif high <= 255:
        scale = 1.0
    elif high <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / high
    return im.point(lambda v: v * scale).convert("L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any decoded mode to RGB, compositing transparency onto white."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_thumbnail(stored: bytes, side: int = THUMB_SIDE) -> bytes:
    """A preview JPEG, longer side at most `side`, of a stored image."""
    im = open_stored(stored, draft_side=side)
    # A thumbnail is a preview: BILINEAR costs less than half of LANCZOS.
    im.thumbnail((side, side), Image.Resampling.BILINEAR)
    return _jpeg(im, THUMB_QUALITY)


def decode_and_normalise(data: bytes, *, min_side: int = 32, warn_side: int = 100,
                         max_pixels: int = 50_000_000, max_side_out: int = 1024) -> NormalisedImage:
    """Validate `data` as an image of an allowed format and size and normalise it for storage.

    Raises UnsupportedFormat (202) for non-images, corrupt or truncated data, formats outside
    the seed's list and images over `max_pixels`; UnsupportedDimension (203) when the smaller
    side is under `min_side`. A smaller side under `warn_side` is accepted with a warning.
    """
    fmt, width, height = _identify(data, max_pixels)
    # Checked on the header's size, before any pixel is decoded.
    if min(width, height) < min_side:
        raise UnsupportedDimension(
            f"image is {width}x{height}; both sides must be at least {min_side} px")
    im, swapped, exact = _decode(data, fmt, max_side_out)
    if swapped:  # report the sides a viewer sees
        width, height = height, width
    try:
        rgb = to_rgb(im)
    except (ValueError, OSError) as exc:
        raise UnsupportedFormat(f"image mode {im.mode} cannot be converted to RGB: {exc}") from None
    warnings: list[str] = []
    if min(width, height) < warn_side:
        warnings.append(f"image is {width}x{height}; at least {warn_side} px on both sides "
                        "is recommended for good search results")
    fmt_name = _FORMAT_NAMES.get(fmt, fmt)
    if (fmt_name in KEPT_AS_IS and exact and im.mode != "CMYK" and max(rgb.size) <= max_side_out
            and len(data) <= KEPT_MAX_BYTES):
        # Upright, small enough and in a web format: kept as it came. Re-encoding would cost
        # an encode and a decode per item and lose detail (a JPEG round trip of the
        # benchmark's PNG catalog cost 0.02 of recall@1); readers convert with open_stored,
        # which gives these very pixels.
        return NormalisedImage(image=rgb, stored=data, stored_type=KEPT_AS_IS[fmt_name],
                               width=width, height=height, format=fmt_name,
                               content_hash=content_hash(data), warnings=warnings, as_stored=True)
    if max(rgb.size) > max_side_out:
        rgb.thumbnail((max_side_out, max_side_out), Image.Resampling.LANCZOS)
    return NormalisedImage(image=rgb, stored=_jpeg(rgb, JPEG_QUALITY), stored_type="image/jpeg",
                           width=width, height=height, format=fmt_name,
                           content_hash=content_hash(data), warnings=warnings)
