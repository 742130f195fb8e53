"""Outbound safety of customer-given URLs (webhook endpoints): which URLs and addresses the ledger may call."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpcore
import httpx
import msgspec

URL_LENGTH_MAX = 2048


class OutboundPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """https only, to public addresses; `allow_http_loopback` (development) lets http://127.0.0.1 / localhost
    through, `allow_private_addresses` private, link-local and loopback addresses (a private network)."""

    allow_http_loopback: bool = False
    allow_private_addresses: bool = False


class RefusedUrl(Exception):
    """A URL the policy refuses, with why (shown to the customer as is)."""


def loggable(url: str) -> str:
    """A customer's URL as logs may show it: scheme, host, port and path; its query and fragment (a receiver may take
    a token there: the customer's secret) left out."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    return parts._replace(query="", fragment="").geturl() + ("?..." if parts.query else "")


def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_shape(url: str, policy: OutboundPolicy) -> tuple[str, int]:
    """The URL's own rules (no DNS): absolute http(s), no credentials, https unless http to loopback is allowed.
    Returns (host, port)."""
    if not url or len(url) > URL_LENGTH_MAX or not url.isprintable() or any(c.isspace() for c in url):
        raise RefusedUrl(f"the URL must be 1-{URL_LENGTH_MAX} printable characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl(f"the URL is not valid: {exc}") from exc
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise RefusedUrl("the URL must be absolute: https://host/path")
    try:
        host.encode("idna")  # what the resolver does first: labels of 1-63 characters, nothing it cannot encode
    except UnicodeError as exc:
        raise RefusedUrl("the URL's host is not a valid host name: each of its labels must be 1-63 characters") from exc
    try:
        # The host as the worker's client reads it (IDNA 2008, both ways) and names it on the wire: stricter than the
        # resolver's IDNA 2003, which reads full-width digits as an address the client then cannot encode.
        wire = httpx.URL(url)
        wire.host  # noqa: B018 - decodes its A-labels, as the client does when it sends: a malformed one is refused
        host = wire.raw_host.decode("ascii").rstrip(".").lower()
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise RefusedUrl(f"the URL's host is not a valid host name: {exc}") from exc
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("the URL must not carry credentials")
    if parts.fragment:
        raise RefusedUrl("the URL must not carry a fragment")
    if parts.scheme == "http" and not (policy.allow_http_loopback and _is_loopback_host(host)):
        raise RefusedUrl("the URL must be https (http only to loopback, when the development setting allows it)")
    return host, port or (443 if parts.scheme == "https" else 80)


# RFC 6052's well-known NAT64 prefix: a gateway calls the IPv4 address in the last 32 bits (an IPv6-only cluster's way
# out to IPv4, its private networks included). Python counts the prefix as global.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _reached(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one reaches (IPv4-mapped, through NAT64 or a 6to4 relay), else the address itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.ipv4_mapped or ip.sixtofour or ip


def address_refused(address: str, host: str, policy: OutboundPolicy) -> str | None:
    """Why this resolved address may not be called, or None."""
    ip = _reached(ipaddress.ip_address(address.split("%", 1)[0]))
    if ip.is_loopback and policy.allow_http_loopback and _is_loopback_host(host):
        return None
    if policy.allow_private_addresses:
        return None if not (ip.is_multicast or ip.is_unspecified) else f"{ip} is not a unicast address"
    if not ip.is_global or ip.is_multicast or ip.is_unspecified:
        return f"{host} resolves to {ip}, a private, loopback, link-local or reserved address"
    return None


async def resolve(host: str, port: int, timeout_s: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        raise RefusedUrl(f"{host} does not resolve: {exc.__class__.__name__}") from exc
    return sorted({info[4][0] for info in infos})


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def allowed_addresses(host: str, port: int, policy: OutboundPolicy, resolver: Resolver = resolve) -> list[str]:
    """The addresses the host resolves to, once; RefusedUrl unless every one is allowed (a connection may take
    any of them)."""
    addresses = await resolver(host, port)
    for address in addresses:
        why = address_refused(address, host, policy)
        if why is not None:
            raise RefusedUrl(why)
    return addresses


async def check_url(url: str, policy: OutboundPolicy, resolver: Resolver = resolve) -> None:
    """Raises RefusedUrl unless the URL may be called now: its shape, then its host's addresses. Checked at
    registration; a delivery's connection checks the addresses it connects to itself (CheckedBackend)."""
    host, port = check_shape(url, policy)
    await allowed_addresses(host, port, policy, resolver)


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that connects only to addresses the policy allows, to the very addresses it
    checked: the name is resolved once per connection, so a name rebound to a private address between a check and
    the connection (DNS rebinding) is never called. TLS still names and verifies the host, not the address."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver = resolve) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options=None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await allowed_addresses(host.rstrip(".").lower(), port, self._policy, self._resolver):
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options=None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not called")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
