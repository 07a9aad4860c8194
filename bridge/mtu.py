"""MTU arithmetic for VXLAN inside WireGuard. Computed from the underlay, never hard-coded.

Hosts left at 1500 on a stretched segment answer ping but TCP hangs once segments grow
(ARCHITECTURE.md), so every number here is derived and exposed to whoever configures hosts.
"""

from __future__ import annotations

from typing import Literal

IPVersion = Literal[4, 6]

_IP_HEADER = {4: 20, 6: 40}  # RFC 791 section 3.1; RFC 8200 section 3
_UDP_HEADER = 8  # RFC 768
_TCP_HEADER = 20  # RFC 9293 section 3.1, without options
# WireGuard whitepaper section 5.4.6: a transport data message adds type+reserved (4),
# receiver index (4), counter (8) and the Poly1305 tag (16).
_WIREGUARD_MESSAGE = 32
_ETHERNET_HEADER = 14  # the inner frame's header travels inside VXLAN
_VXLAN_HEADER = 8  # RFC 7348 section 5
DOT1Q_TAG = 4  # IEEE 802.1Q
IPV6_MIN_MTU = 1280  # RFC 8200 section 5: every link carrying IPv6


def wireguard_overhead(underlay: IPVersion) -> int:
    """Bytes WireGuard adds to each packet: 60 over an IPv4 underlay, 80 over IPv6."""
    return _IP_HEADER[underlay] + _UDP_HEADER + _WIREGUARD_MESSAGE


def vxlan_overhead(overlay: IPVersion) -> int:
    """Bytes between a VXLAN device's MTU and the IP packet it sends: 50 over IPv4, 70 over IPv6.

    RFC 7348 section 5 counts an outer Ethernet header; inside WireGuard (a layer-3 tunnel)
    there is none, but the inner frame's own Ethernet header is carried, so the sum is the same.
    """
    return _IP_HEADER[overlay] + _UDP_HEADER + _VXLAN_HEADER + _ETHERNET_HEADER


def wireguard_mtu(underlay_mtu: int, underlay: IPVersion) -> int:
    return underlay_mtu - wireguard_overhead(underlay)


def inner_mtu(wg_mtu: int, overlay: IPVersion, *, dot1q_inside: bool) -> int:
    """The MTU hosts on a stretched segment must use (e.g. 1500 -> 1440 -> 1390 over IPv4)."""
    return wg_mtu - vxlan_overhead(overlay) - (DOT1Q_TAG if dot1q_inside else 0)


def tcp_mss(mtu: int, family: IPVersion) -> int:
    """The MSS to clamp TCP SYNs to for a link of `mtu` (RFC 6691 section 2: MTU minus the
    fixed IP and TCP headers)."""
    return mtu - _IP_HEADER[family] - _TCP_HEADER
