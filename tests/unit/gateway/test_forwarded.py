"""gateway.forwarded: believe X-Forwarded-* only from our own proxies."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.forwarded import client_ip, origin

LB = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        ("203.0.113.7", xff("198.51.100.1"), LB, "203.0.113.7"),  # untrusted peer: ignore
        ("203.0.113.7", xff("198.51.100.1"), [], "203.0.113.7"),
        ("10.0.0.5", [], LB, "10.0.0.5"),
        ("10.0.0.5", xff("203.0.113.9"), LB, "203.0.113.9"),
        ("10.0.0.5", xff("6.6.6.6, 203.0.113.9"), LB, "203.0.113.9"),  # spoofed left entry
        ("10.0.0.5", xff("6.6.6.6, 203.0.113.9, 10.0.0.4"), LB, "203.0.113.9"),
        ("10.0.0.5", xff("6.6.6.6", "203.0.113.9, 10.0.0.4"), LB, "203.0.113.9"),
        ("10.0.0.5", xff("10.9.9.9, 10.0.0.4"), LB, "10.9.9.9"),  # all ours
        ("10.0.0.5", xff("203.0.113.9, not-an-ip"), LB, "10.0.0.5"),
        ("10.0.0.5", xff("[2001:db8::1]:443"), LB, "2001:db8::1"),
        ("10.0.0.5", xff("198.51.100.2:5555"), LB, "198.51.100.2"),
        ("2001:db8:ffff::1", xff("2001:db8::7"), LB, "2001:db8::7"),
        ("10.0.0.5", [(b"X_Forwarded_For", b"203.0.113.9")], LB, "203.0.113.9"),
    ],
)
def test_client_ip(
    peer: str,
    headers: list[tuple[bytes, bytes]],
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    expected: str,
) -> None:
    assert client_ip(peer, headers, trusted) == expected


def test_proto_and_host_only_from_trusted_peer() -> None:
    headers = [(b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"evil.example")]
    seen = origin("203.0.113.7", "https", "GW.corp.example", headers, LB)
    assert (seen.proto, seen.host, seen.client_ip) == ("https", "gw.corp.example", "203.0.113.7")
    seen = origin("10.0.0.5", "http", "gw", headers, LB)
    assert (seen.proto, seen.host) == ("http", "evil.example")


def test_bad_forwarded_values_ignored() -> None:
    headers = [(b"x-forwarded-proto", b"gopher"), (b"x-forwarded-host", b"a b/c")]
    seen = origin("10.0.0.5", "https", "gw.corp.example", headers, LB)
    assert (seen.proto, seen.host) == ("https", "gw.corp.example")
