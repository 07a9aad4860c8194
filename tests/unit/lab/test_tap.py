"""The underlay tap's verdict on each frame, from frames built with scapy."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from lab.tap import classify, problem

SITES = {"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"}
PORTS = {51820, 51821}
MARKER = b"overcast-rotate-probe"


def wireguard(kind: int, size: int = 64) -> bytes:
    return bytes([kind, 0, 0, 0]) + b"\x5a" * (size - 4)


def verdict(frame: Packet) -> str:
    return classify(bytes(Ether() / frame), SITES, PORTS, MARKER)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51820, dport=51821)
         / Raw(wireguard(4)), "wireguard:transport"),
        (IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=51821, dport=51820)
         / Raw(wireguard(1, 148)), "wireguard:initiation"),
        (IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=51820, dport=51820)
         / Raw(wireguard(2, 92)), "wireguard:response"),
        (ARP(psrc="192.0.2.1", pdst="192.0.2.2"), "plumbing"),
        (IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2"), "plumbing"),
    ],
)  # fmt: skip
def test_wireguard_between_sites_and_its_plumbing_are_allowed(frame: Packet, expected: str) -> None:
    assert verdict(frame) == expected


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        # The tunnelled traffic itself, even inside what looks like WireGuard.
        (IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51820, dport=51820)
         / Raw(wireguard(4) + MARKER), "marker in clear"),
        (IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(), "IP protocol 1"),
        (IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=51820, dport=51820)
         / Raw(wireguard(4)), "not between sites"),
        # VXLAN outside WireGuard.
        (IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=4789, dport=4789) / Raw(b"\x08" * 40),
         "not between WireGuard ports"),
        (IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51820, dport=51820) / Raw(b"\x05" * 40),
         "not WireGuard"),
        (IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51820, dport=51820) / Raw(b"\x04"),
         "not WireGuard"),
        (ARP(psrc="192.0.2.1", pdst="10.0.0.1"), "ARP between 192.0.2.1 and 10.0.0.1"),
        (IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6ND_NS(tgt="2001:db8::2"),
         "IP protocol 58"),
    ],
)  # fmt: skip
def test_anything_else_is_in_clear_and_says_why(frame: Packet, why: str) -> None:
    assert why in verdict(frame)


def test_short_and_foreign_frames_are_reported_not_crashed_on() -> None:
    assert "runt" in classify(b"\x00" * 10, SITES, PORTS, MARKER)
    assert "truncated" in classify(bytes(Ether(type=0x0800)) + b"\x45", SITES, PORTS, MARKER)
    assert "ethertype 0x88cc" in classify(
        bytes(Ether(type=0x88CC) / Raw(b"\0" * 40)), SITES, PORTS, b""
    )


def test_problem_is_none_exactly_for_what_may_cross() -> None:
    wg = Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51820, dport=51820)
    assert problem(bytes(wg / Raw(wireguard(4))), SITES, PORTS, MARKER) is None
    assert problem(bytes(Ether() / ARP(psrc="192.0.2.1", pdst="192.0.2.2")), SITES, PORTS) is None
    why = problem(bytes(wg / Raw(wireguard(4) + MARKER)), SITES, PORTS, MARKER)
    assert why is not None and "marker" in why
