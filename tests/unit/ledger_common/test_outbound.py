"""Outbound safety of webhook URLs: shape rules and the addresses refused, without DNS."""

from __future__ import annotations

import pytest

from ledger_common.outbound import OutboundPolicy, RefusedUrl, address_refused, check_shape

PRODUCTION = OutboundPolicy()
DEVELOPMENT = OutboundPolicy(allow_http_loopback=True)
PRIVATE_NET = OutboundPolicy(allow_private_addresses=True)


@pytest.mark.parametrize("url", ["http://93.184.216.34/x", "ftp://host/x", "https:///x", "https://u:p@host/x",
                                 "https://host/x#frag", "https://host/ x", "", "https://" + "a" * 2100,
                                 "https://host:99999/x"])
def test_shapes_refused_in_production(url):
    with pytest.raises(RefusedUrl):
        check_shape(url, PRODUCTION)


def test_http_only_to_loopback_and_only_when_development_allows_it():
    assert check_shape("https://hooks.example.com/x", PRODUCTION) == ("hooks.example.com", 443)
    assert check_shape("http://127.0.0.1:8080/x", DEVELOPMENT) == ("127.0.0.1", 8080)
    assert check_shape("http://localhost/x", DEVELOPMENT) == ("localhost", 80)
    with pytest.raises(RefusedUrl):
        check_shape("http://10.0.0.1/x", DEVELOPMENT)
    with pytest.raises(RefusedUrl):
        check_shape("http://127.0.0.1/x", PRIVATE_NET)


@pytest.mark.parametrize("address", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:192.168.0.1",
                                     "224.0.0.1"])
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address):
    assert address_refused(address, "hooks.example.com", PRODUCTION) is not None


def test_public_addresses_pass_and_settings_widen_what_is_allowed():
    assert address_refused("93.184.216.34", "hooks.example.com", PRODUCTION) is None
    assert address_refused("2606:4700::1111", "hooks.example.com", PRODUCTION) is None
    assert address_refused("10.0.0.1", "hooks.internal", PRIVATE_NET) is None
    assert address_refused("127.0.0.1", "localhost", DEVELOPMENT) is None
    # Loopback through a public-looking name is still refused in development: only loopback names pass.
    assert address_refused("127.0.0.1", "rebind.example.com", DEVELOPMENT) is not None
    assert address_refused("224.0.0.1", "hooks.internal", PRIVATE_NET) is not None
