"""Prefix.parse's fast path (inet_pton, cached) agrees with ipaddress on every input: the
same Prefix for a valid one, a ValueError for an invalid one."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgp_guard.update import Prefix


def reference(text: str) -> Prefix | None:
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        return None
    return Prefix(net.version, int(net.network_address), net.prefixlen)


def parsed(text: str) -> Prefix | None:
    try:
        return Prefix.parse(text)
    except ValueError:
        return None


@given(
    st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 2**128 - 1)),
    st.integers(0, 130),
    st.booleans(),
)
def test_fast_path_matches_ipaddress(value: int, length: int, v6: bool) -> None:
    address = ipaddress.IPv6Address(value) if v6 or value >= 2**32 else ipaddress.IPv4Address(value)
    for text in (f"{address}/{length}", f"{address}/0{length}", str(address)):
        assert parsed(text) == reference(text), text


@pytest.mark.parametrize(
    "text",
    ["192.0.2.0/24", "192.0.2.1/24", "01.2.3.0/24", "1.2.3/24", "192.0.2.0/", "/24",
     "2001:db8::/32", "2001:db8::1/129", "::ffff:192.0.2.0/120", "192.0.2.0/+24", " 192.0.2.0/24"],
)  # fmt: skip
def test_edge_cases_match_ipaddress(text: str) -> None:
    assert parsed(text) == reference(text)
