"""The image-fetch network policy: which addresses and URLs are refused (no real DNS)."""
import asyncio
import re
import socket

import pytest

from magpie.common.errors import DownloadFailed
from magpie.image_fetch.netpolicy import (
    check_ip,
    check_url,
    classify_ip,
    parse_networks,
    resolve_checked,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("ip", "kind"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("100.127.255.254", "private"),
    ("fd12:3456::1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("0.1.2.3", "reserved"),
    ("192.0.2.1", "reserved"), ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
    ("fec0::1", "reserved"), ("::10.0.0.1", "reserved"),
    # IPv6 forms that carry an IPv4 address are judged by what they carry.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a00:1", "private"),
    ("2002:a00:1::1", "private"),
])
def test_non_public_addresses_are_classified(ip, kind):
    assert classify_ip(ip) == kind


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1",
                                "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass(ip):
    assert classify_ip(ip) is None
    check_ip(ip, allow_private=False)


def test_refusal_names_the_kind_and_the_address():
    with pytest.raises(DownloadFailed) as caught:
        check_ip("10.0.0.1", allow_private=False)
    assert caught.value.detail == "im_url resolves to a private address 10.0.0.1"
    assert caught.value.code == 201
    with pytest.raises(DownloadFailed, match="an unspecified address 0.0.0.0"):
        check_ip("0.0.0.0", allow_private=False)


def test_allow_private_and_allowed_networks_let_addresses_through():
    check_ip("127.0.0.1", allow_private=True)
    allowed = parse_networks(["127.0.0.0/8", "fd00::/8"])
    check_ip("127.0.0.1", allow_private=False, allowed=allowed)
    check_ip("fd00::5", allow_private=False, allowed=allowed)
    with pytest.raises(DownloadFailed, match="private address 10.0.0.1"):
        check_ip("10.0.0.1", allow_private=False, allowed=allowed)


@pytest.mark.parametrize(("url", "detail"), [
    ("ftp://example.com/a.jpg", "scheme 'ftp' is not allowed"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("gopher://example.com/", "scheme 'gopher' is not allowed"),
    ("example.com/a.jpg", "scheme missing is not allowed"),
    ("http:///a.jpg", "has no host"),
    ("http://example.com:99999/a.jpg", "not a valid URL"),
    ("http://127.0.0.1/a.jpg", "points to a loopback address 127.0.0.1"),
    ("http://[::1]:8080/a.jpg", "points to a loopback address ::1"),
    ("http://[::ffff:10.1.2.3]/a.jpg", "a private address ::ffff:a01:203 (10.1.2.3)"),
    ("https://169.254.169.254/latest/meta-data", "points to a link-local address"),
    ("http://0.0.0.0/", "points to an unspecified address"),
])
def test_bad_urls_are_refused_before_any_connection(url, detail):
    with pytest.raises(DownloadFailed, match=re.escape(detail)):
        check_url(url, False)


def test_good_urls_give_their_target():
    assert check_url("https://cdn.example.com/a.jpg", False) == ("https", "cdn.example.com", 443)
    assert check_url("HTTP://Example.COM:8080/a", False) == ("http", "example.com", 8080)
    assert check_url("http://10.0.0.1/x", True).host == "10.0.0.1"
    assert check_url("http://127.0.0.1:9/x", False, allowed=parse_networks(["127.0.0.1"])).port == 9


async def test_resolution_refuses_a_literal_private_host():
    with pytest.raises(DownloadFailed, match="'10.0.0.1' resolves to a private address 10.0.0.1"):
        await resolve_checked("10.0.0.1", 80, allow_private=False)
    assert await resolve_checked("10.0.0.1", 80, allow_private=True) == ["10.0.0.1"]


def _fake_dns(monkeypatch, answer):
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host, port, **kwargs):
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port)) for ip in answer]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_one_private_answer_among_public_ones_refuses_the_host(monkeypatch):
    _fake_dns(monkeypatch, ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(DownloadFailed,
                       match="host 'shop.example' resolves to a private address 10.0.0.7"):
        await resolve_checked("shop.example", 80, allow_private=False)


async def test_public_answers_are_returned_deduplicated(monkeypatch):
    _fake_dns(monkeypatch, ["93.184.216.34", "93.184.216.34", "2606:2800:220:1::1"])
    assert await resolve_checked("shop.example", 443, allow_private=False) == [
        "93.184.216.34", "2606:2800:220:1::1"]


async def test_unknown_host_is_a_download_failure_but_a_temporary_one_is_raised(monkeypatch):
    _fake_dns(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(DownloadFailed, match="'nowhere.example' could not be resolved"):
        await resolve_checked("nowhere.example", 80, allow_private=False)
    _fake_dns(monkeypatch, socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    with pytest.raises(socket.gaierror):
        await resolve_checked("flaky.example", 80, allow_private=False)
