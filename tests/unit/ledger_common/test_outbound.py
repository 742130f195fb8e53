"""Outbound safety of webhook URLs: shape rules, the addresses refused, and a delivery's connection made only to the
addresses it checked (DNS rebinding), with a stand-in name server."""

from __future__ import annotations

import asyncio

import pytest

from ledger_common.outbound import (
    OutboundPolicy,
    RefusedUrl,
    address_refused,
    check_shape,
    check_url,
)
from worker.settings import WorkerSettings
from worker.webhooks import http_client

PRODUCTION = OutboundPolicy()
DEVELOPMENT = OutboundPolicy(allow_http_loopback=True)
PRIVATE_NET = OutboundPolicy(allow_private_addresses=True)


@pytest.mark.parametrize("url", ["http://93.184.216.34/x", "ftp://host/x", "https:///x", "https://u:p@host/x",
                                 "https://host/x#frag", "https://host/ x", "", "https://" + "a" * 2100,
                                 "https://host:99999/x", "https://a..example.com/x", "https://.example.com/x",
                                 "https://" + "a" * 64 + ".example.com/x",
                                 "https://\uff19\uff13.\uff11\uff18\uff14.\uff12\uff11\uff16.\uff13\uff14/x",
                                 "https://xn--zz.example.com/x", "https://i\u2764.example.com/x"])
def test_shapes_refused_in_production(url):
    with pytest.raises(RefusedUrl):
        check_shape(url, PRODUCTION)


def test_http_only_to_loopback_and_only_when_development_allows_it():
    assert check_shape("https://hooks.example.com/x", PRODUCTION) == ("hooks.example.com", 443)
    assert check_shape("http://127.0.0.1:8080/x", DEVELOPMENT) == ("127.0.0.1", 8080)
    assert check_shape("http://localhost/x", DEVELOPMENT) == ("localhost", 80)
    assert check_shape("https://B\u00fccher.example./x", PRODUCTION) == ("xn--bcher-kva.example", 443)  # as sent
    with pytest.raises(RefusedUrl):
        check_shape("http://10.0.0.1/x", DEVELOPMENT)
    with pytest.raises(RefusedUrl):
        check_shape("http://127.0.0.1/x", PRIVATE_NET)


@pytest.mark.parametrize("address", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:192.168.0.1",
                                     "224.0.0.1",
                                     # IPv4 reached through IPv6: a NAT64 gateway's well-known prefix (an IPv6-only
                                     # cluster's way out to IPv4, its private networks included) and a 6to4 relay
                                     "64:ff9b::a9fe:a9fe", "64:ff9b::10.1.2.3", "64:ff9b::127.0.0.1",
                                     "2002:a9fe:a9fe::1", "2002:c0a8:101::"])
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address):
    assert address_refused(address, "hooks.example.com", PRODUCTION) is not None


def test_public_addresses_pass_and_settings_widen_what_is_allowed():
    assert address_refused("93.184.216.34", "hooks.example.com", PRODUCTION) is None
    assert address_refused("2606:4700::1111", "hooks.example.com", PRODUCTION) is None
    assert address_refused("64:ff9b::93.184.216.34", "hooks.example.com", PRODUCTION) is None  # a public one via NAT64
    assert address_refused("2002:5db8:d822::1", "hooks.example.com", PRODUCTION) is None
    assert address_refused("10.0.0.1", "hooks.internal", PRIVATE_NET) is None
    assert address_refused("127.0.0.1", "localhost", DEVELOPMENT) is None
    # Loopback through a public-looking name is still refused in development: only loopback names pass.
    assert address_refused("127.0.0.1", "rebind.example.com", DEVELOPMENT) is not None
    assert address_refused("224.0.0.1", "hooks.internal", PRIVATE_NET) is not None


class _Receiver:
    """The customer's server (a test double outside the system): answers 200 and remembers each request's head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def __aenter__(self) -> int:
        async def serve(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()


def _dns(*answers: list[str]):
    """A name server (outside the system) whose answer for every name changes from one lookup to the next."""
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return resolver, calls


async def test_a_name_rebound_to_a_private_address_after_its_check_is_never_connected_to():
    settings = WorkerSettings(webhook_allow_private_addresses=False)
    resolver, calls = _dns(["93.184.216.34"], ["127.0.0.1"])
    async with _Receiver() as port, http_client(settings, resolver) as client:
        url = f"https://hooks.example.com:{port}/hook"
        await check_url(url, PRODUCTION, resolver)  # registration's check: the public answer
        with pytest.raises(RefusedUrl, match="127.0.0.1"):
            await client.post(url, content=b"{}")  # the connection's own lookup: now loopback, refused
    assert calls == ["hooks.example.com", "hooks.example.com"]


async def test_the_connection_goes_to_the_checked_address_and_still_names_the_host():
    settings = WorkerSettings(webhook_allow_private_addresses=True)
    resolver, calls = _dns(["127.0.0.1"])
    receiver = _Receiver()
    async with receiver as port, http_client(settings, resolver) as client:
        response = await client.post(f"http://hooks.internal:{port}/hook", content=b"{}")
    assert response.status_code == 200 and calls == ["hooks.internal"]
    assert f"host: hooks.internal:{port}".encode() in receiver.heads[0].lower()
