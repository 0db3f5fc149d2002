"""The query image of an upload search: error codes, box crops, im_id expiry."""
from datetime import date, timedelta

import pytest
from PIL import Image

from magpie.common.errors import (
    DownloadFailed,
    ImageDownloadFailed,
    ImageDownloadTimeout,
    ImageIdNotFound,
    InvalidImageDimension,
    InvalidImageFormat,
    InvalidImageUrl,
)
from magpie.search.params import Box
from magpie.search.query_image import QueryImage, crop, decode, download_error, new_im_id, object_key
from tests.fixtures.images import HTML, make_image

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("detail", "code"), [
    ("im_url did not finish downloading within 30 s", 1106),
    ("im_url timed out (read) (gave up after 3 attempts)", 1106),
    ("im_url answered HTTP 503 (gave up after 3 attempts)", 1105),
    ("im_url connection failed: refused (gave up after 3 attempts)", 1105),
    ("im_url host 'nope.invalid' could not be resolved (not found)", 1105),
    ("im_url answered HTTP 404", 1104),
    ("im_url scheme 'ftp' is not allowed; use http or https", 1104),
    ("im_url host resolves to a private address 10.0.0.1", 1104),
])
def test_download_failures_map_to_the_references_codes(detail, code):
    err = download_error(DownloadFailed(detail))
    assert err.code == code and err.detail.startswith(type(err).message.rstrip("."))
    assert isinstance(err, {1104: InvalidImageUrl, 1105: ImageDownloadFailed, 1106: ImageDownloadTimeout}[code])


async def test_bad_uploads_are_1102_or_1103():
    with pytest.raises(InvalidImageFormat, match="Invalid image file format: content is HTML"):
        await decode(HTML, min_side=32)
    with pytest.raises(InvalidImageUrl):
        await decode(b"", min_side=32, from_url=True)
    with pytest.raises(InvalidImageDimension):
        await decode(make_image("png", (16, 16)), min_side=32)
    with pytest.raises(InvalidImageFormat, match="larger than 10 MB"):
        await decode(b"\0" * (10 * 2**20 + 1), min_side=32)
    query = await decode(make_image("png", (120, 90)), min_side=32)
    assert (query.width, query.height) == (120, 90) and query.stored_type == "image/png"
    assert query.stored[:8] == b"\x89PNG\r\n\x1a\n"
    query = await decode(make_image("gif", (120, 90)), min_side=32)  # not kept as it came
    assert query.stored_type == "image/jpeg" and query.stored[:2] == b"\xff\xd8"


def test_box_crops_in_original_pixels_and_bad_boxes_are_ignored():
    # A 2000x1000 original normalised to 1000x500: box coordinates are scaled by half.
    query = QueryImage(Image.new("RGB", (1000, 500)), 2000, 1000)
    assert crop(query, Box(0, 0, 1000, 1000)).size == (500, 500)
    assert crop(query, Box(1500, 500, 9999, 9999)).size == (250, 250)  # clipped to the image
    assert crop(query, Box(5000, 5000, 6000, 6000)) is query.image  # outside: whole image
    assert crop(query, None) is query.image


def test_im_ids_name_their_day_and_expire():
    today = date(2024, 6, 10)
    im_id = new_im_id(today)
    assert len(im_id) == 8 + 32 + 4 and im_id.startswith("20240610") and im_id.endswith(".jpg")
    assert object_key("app", im_id, today) == f"app/queries/20240610/{im_id[8:-4]}"
    assert object_key("app", im_id, today + timedelta(days=1))  # still valid the next day
    with pytest.raises(ImageIdNotFound, match="expired"):
        object_key("app", im_id, today + timedelta(days=2))
    for bad in ("", "x.jpg", "20240610zz.jpg", "../../etc/passwd", im_id[:-4]):
        with pytest.raises(ImageIdNotFound):
            object_key("app", bad, today)
