"""Network policy for image downloads: which URLs and addresses the fetcher may reach.

Merchants give us arbitrary `im_url`s, so without this the fetcher is an SSRF gadget: a URL
(or a redirect, or a DNS name) pointing at 127.0.0.1, the cloud metadata endpoint
169.254.169.254 or an internal 10.x service would be fetched from inside our network.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from magpie.common.errors import DownloadFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Checked in order; the first match names the kind in the error detail. Python's own
# `is_private` lumps loopback, link-local and documentation ranges together (and in 3.11
# misses IPv4-mapped IPv6), so the ranges are spelled out here.
_KINDS: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = tuple(
    (kind, tuple(ipaddress.ip_network(n) for n in nets))
    for kind, nets in (
        ("unspecified", ("0.0.0.0/32", "::/128")),
        ("loopback", ("127.0.0.0/8", "::1/128")),
        ("link-local", ("169.254.0.0/16", "fe80::/10")),
        ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                     "fc00::/7")),
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        # ::/8 holds the deprecated IPv4-compatible form (::10.0.0.1), which 3.11 calls global.
        ("reserved", ("0.0.0.0/8", "240.0.0.0/4", "::/8", "fec0::/10")),
    )
)

# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052) would
# translate 64:ff9b::a00:1 into a connection to 10.0.0.1.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Target(NamedTuple):
    """The parts of a checked URL the fetcher needs."""

    scheme: str
    host: str
    port: int


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings ("10.1.0.0/16") into networks; a bare address is a /32 or /128."""
    return tuple(n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False)
                 for n in networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify_ip(ip: str | IPAddress) -> str | None:
    """The kind of non-public address `ip` is ("loopback", "private", ...), or None if public."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1 on dual-stack sockets; judge what it carries.
        return classify_ip(embedded)
    for kind, networks in _KINDS:
        if any(address in net for net in networks):
            return kind
    # Documentation, benchmarking, IETF protocol ranges and the like: nothing a product
    # image should live on.
    return None if address.is_global and not address.is_reserved else "reserved"


def check_ip(ip: str | IPAddress, *, allow_private: bool, allowed: Sequence[IPNetwork] = (),
             subject: str = "im_url resolves to") -> None:
    """Raise DownloadFailed unless `ip` is public, `allow_private` is set or it is in `allowed`."""
    if allow_private:
        return
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    kind = classify_ip(address)
    if kind is None or any(address.version == n.version and address in n for n in allowed):
        return
    article = "an" if kind[0] in "aeiou" else "a"
    embedded = _embedded_ipv4(address)
    shown = f"{address} ({embedded})" if embedded is not None else str(address)
    raise DownloadFailed(f"{subject} {article} {kind} address {shown}")


def check_url(url: str, allow_private: bool, *, allowed: Sequence[IPNetwork] = ()) -> Target:
    """Check what can be checked without DNS: the scheme, the host and any literal IP."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DownloadFailed(f"im_url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"'{scheme}'" if scheme else "missing"
        raise DownloadFailed(f"im_url scheme {shown} is not allowed; use http or https")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise DownloadFailed("im_url has no host")
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        check_ip(literal, allow_private=allow_private, allowed=allowed,
                 subject="im_url points to")
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


async def resolve_checked(host: str, port: int, *, allow_private: bool,
                          allowed: Sequence[IPNetwork] = (),
                          timeout: float | None = None) -> list[str]:
    """Resolve `host` and return its addresses, refusing the host if ANY of them is non-public.

    Refusing on any (rather than filtering) because a name that mixes public and private
    answers is either misconfigured or a rebinding attempt. Raises DownloadFailed for a
    refused or unknown host, TimeoutError when resolution takes longer than `timeout`, and
    socket.gaierror for temporary resolver failures (EAI_AGAIN), which callers may retry.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise
        reason = exc.strerror or str(exc)
        raise DownloadFailed(f"im_url host '{host}' could not be resolved ({reason})") from None
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    if not addresses:
        raise DownloadFailed(f"im_url host '{host}' has no addresses")
    for ip in addresses:
        # Judge the address without its zone ("fe80::1%eth0"), but connect with it.
        check_ip(ip.split("%", 1)[0], allow_private=allow_private, allowed=allowed,
                 subject=f"im_url host '{host}' resolves to")
    return addresses
