"""ImageFetcher against a real local HTTP server: policy, retries, limits, caching, fairness."""
import asyncio
import ssl
import time

import pytest

from magpie.common.errors import DownloadFailed, UnsupportedDimension, UnsupportedFormat
from magpie.image_fetch.fetcher import ImageFetcher
from magpie.image_fetch.images import decode_and_normalise
from tests.fixtures.images import (  # noqa: F401 - the servers are fixtures
    ETAG,
    LAST_MODIFIED,
    SEED_FORMATS,
    free_local_port,
    https_image_server,
    image_server,
    make_image,
)

pytestmark = pytest.mark.integration


def fetcher(**overrides) -> ImageFetcher:
    """A fetcher that may reach the loopback test server, with test-sized waits."""
    options = {"allow_private": True, "backoff_s": 0.01, "connect_timeout_s": 2,
               "read_timeout_s": 2, "total_timeout_s": 10, **overrides}
    return ImageFetcher(**options)


async def test_every_seed_format_downloads_and_decodes(image_server):
    async with fetcher() as f:
        for ext in SEED_FORMATS:
            result = await f.fetch(f"{image_server}/ok/shoe.{ext}")
            assert result.status == "ok"
            assert result.content == make_image(ext)
            assert result.final_url == f"{image_server}/ok/shoe.{ext}"
            assert decode_and_normalise(result.content).image.size == (120, 90)


async def test_fetch_before_start_is_a_programming_error():
    with pytest.raises(RuntimeError, match="start"):
        await ImageFetcher().fetch("https://example.com/a.jpg")


async def test_server_errors_are_retried_until_they_pass(image_server):
    async with fetcher(retries=2) as f:
        result = await f.fetch(f"{image_server}/flaky?key=a")
    assert result.status == "ok"
    assert image_server.state.hits["flaky:a"] == 3


async def test_too_many_requests_is_retried(image_server):
    async with fetcher(retries=2) as f:
        assert (await f.fetch(f"{image_server}/flaky?key=b&code=429&fail=1")).status == "ok"
    assert image_server.state.hits["flaky:b"] == 2


async def test_retries_give_up_with_the_last_reason(image_server):
    async with fetcher(retries=1) as f:
        with pytest.raises(DownloadFailed, match=r"HTTP 500 \(gave up after 2 attempts\)"):
            await f.fetch(f"{image_server}/flaky?key=c&fail=5")
    assert image_server.state.hits["flaky:c"] == 2


async def test_client_errors_are_not_retried(image_server):
    async with fetcher(retries=2) as f:
        with pytest.raises(DownloadFailed, match="HTTP 404") as caught:
            await f.fetch(f"{image_server}/404")
    assert caught.value.code == 201
    assert image_server.state.hits["/404"] == 1


async def test_a_slow_server_times_out_quickly(image_server):
    async with fetcher(read_timeout_s=0.3, retries=1) as f:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match=r"timed out \(read\).*2 attempts"):
            await f.fetch(f"{image_server}/slow?s=5")
    assert time.monotonic() - started < 2
    assert image_server.state.hits["/slow"] == 2


async def test_the_total_deadline_bounds_the_whole_fetch(image_server):
    async with fetcher(read_timeout_s=5, total_timeout_s=0.4, retries=2) as f:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match="within 0.4 s"):
            await f.fetch(f"{image_server}/slow?s=5")
    assert time.monotonic() - started < 1.5


async def test_connection_refused_is_retried_then_fails(image_server):
    async with fetcher(retries=1) as f:
        with pytest.raises(DownloadFailed, match="connection failed.*2 attempts"):
            await f.fetch(f"http://127.0.0.1:{free_local_port()}/a.jpg")


async def test_redirect_chains_are_followed(image_server):
    async with fetcher(max_redirects=5) as f:
        result = await f.fetch(f"{image_server}/redirect/5")
    assert result.status == "ok" and result.content == make_image("png")
    assert result.final_url == f"{image_server}/redirect/0"


async def test_too_many_redirects_fail(image_server):
    async with fetcher(max_redirects=5) as f:
        with pytest.raises(DownloadFailed, match="redirected more than 5 times") as caught:
            await f.fetch(f"{image_server}/redirect/6")
    assert caught.value.code == 201
    assert image_server.state.hits["/redirect/0"] == 0


async def test_a_redirect_to_a_private_address_is_refused(image_server):
    # Loopback is let through by an explicit allow-list so the first hop reaches the test
    # server; the private 10.0.0.1 of the second hop must still be refused.
    async with fetcher(allow_private=False, allowed_networks=["127.0.0.1/32"]) as f:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match="private address 10.0.0.1") as caught:
            await f.fetch(f"{image_server}/redirect-to-private")
    assert "after a redirect to http://10.0.0.1/x" in caught.value.detail
    assert time.monotonic() - started < 1  # refused, not attempted


async def test_loopback_is_refused_by_default(image_server):
    async with ImageFetcher() as f:
        with pytest.raises(DownloadFailed, match="points to a loopback address 127.0.0.1"):
            await f.fetch(f"{image_server}/ok/a.png")
        # A name that resolves to loopback is caught where the connection is made.
        with pytest.raises(DownloadFailed, match="host 'localhost' resolves to a loopback"):
            await f.fetch(image_server.replace("127.0.0.1", "localhost") + "/ok/a.png")
    assert image_server.state.hits["/ok/a.png"] == 0


async def test_size_cap_by_content_length(image_server):
    async with fetcher(max_bytes=1 << 20) as f:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match=r"52428800 bytes.*Content-Length"):
            await f.fetch(f"{image_server}/huge")
    assert time.monotonic() - started < 1


async def test_size_cap_while_streaming(image_server):
    async with fetcher(max_bytes=1 << 20) as f:
        with pytest.raises(DownloadFailed, match="over the limit of 1048576 bytes"):
            await f.fetch(f"{image_server}/huge-stream")
        small = await f.fetch(f"{image_server}/huge-stream?bytes=500000")
    assert small.status == "ok" and len(small.content) == 8 * 65536


async def test_conditional_get_gives_not_modified(image_server):
    url = f"{image_server}/etag"
    async with fetcher() as f:
        first = await f.fetch(url)
        assert (first.status, first.etag, first.last_modified) == ("ok", ETAG, LAST_MODIFIED)
        again = await f.fetch(url, etag=first.etag)
        assert again.status == "not_modified" and again.content is None
        assert again.etag == ETAG and again.final_url == url
        by_date = await f.fetch(url, last_modified=first.last_modified)
        assert by_date.status == "not_modified"
        changed = await f.fetch(url, etag='"v0"')
        assert changed.status == "ok" and changed.content == first.content


async def test_downloaded_bad_images_fail_in_decoding(image_server):
    async with fetcher() as f:
        for path, error in [("/notimage", UnsupportedFormat), ("/corrupt", UnsupportedFormat),
                            ("/tiny", UnsupportedDimension)]:
            content = (await f.fetch(image_server + path)).content
            with pytest.raises(error):
                decode_and_normalise(content)
        small = decode_and_normalise((await f.fetch(f"{image_server}/small")).content)
    assert small.warnings and small.image.size == (64, 64)


async def test_a_slow_host_does_not_block_another(image_server):
    state = image_server.state
    async with fetcher(per_host_concurrency=2, global_concurrency=16, read_timeout_s=10) as f:
        slow = [asyncio.create_task(f.fetch(f"{image_server}/slow?s=5")) for _ in range(20)]
        try:
            for _ in range(100):  # wait until the slow host's slots are taken
                if state.in_flight["/slow"] == 2:
                    break
                await asyncio.sleep(0.02)
            # Same server, another host name: its own per-host slots.
            other = image_server.replace("127.0.0.1", "localhost")
            started = time.monotonic()
            result = await f.fetch(f"{other}/ok/fast.png")
            elapsed = time.monotonic() - started
        finally:
            for task in slow:
                task.cancel()
            await asyncio.gather(*slow, return_exceptions=True)
    assert result.status == "ok" and elapsed < 1
    assert state.max_in_flight["/slow"] == 2  # the per-host limit held


async def test_https_verifies_the_certificate_of_the_requested_name(https_image_server):
    trusted = ssl.create_default_context(cafile=str(https_image_server.ca_file))
    by_name = https_image_server.replace("127.0.0.1", "localhost")
    async with fetcher(ssl_context=trusted) as f:
        # We connect to the address we checked, yet TLS still verifies the host name.
        assert (await f.fetch(f"{by_name}/ok/a.png")).content == make_image("png")
        assert (await f.fetch(f"{https_image_server}/ok/a.jpg")).status == "ok"


async def test_an_untrusted_certificate_fails_without_retrying(https_image_server):
    async with fetcher(retries=2, backoff_s=1) as f:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match="TLS certificate is not valid"):
            await f.fetch(f"{https_image_server}/ok/a.png")
    assert time.monotonic() - started < 1  # no backoff: it was not retried
    assert https_image_server.state.hits["/ok/a.png"] == 0
