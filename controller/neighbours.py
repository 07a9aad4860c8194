"""The neighbour table: which IP address belongs to which host MAC, per segment, for the
ARP/ND proxy (`controller.pipeline.neighbour_flows`).

Pure, like `controller.learning`. Addresses are learned from what hosts say about
themselves when they resolve a neighbour: the sender of an ARP request or reply (RFC 826)
and the source of a neighbour solicitation or advertisement (RFC 4861 section 4.3, 4.4).
Every host resolves a neighbour before it sends to it, so IP sources are not needed.

- learn: a new address for a MAC of the segment.
- move: an address seen from another MAC replaces the old binding (the newest wins, as
  gratuitous ARP makes every ARP cache do: RFC 5227 section 3).
- never learned: 0.0.0.0 and :: (probes and DAD, RFC 5227 section 2.1.1, RFC 4862
  section 5.4), multicast, broadcast, loopback; an ARP whose sender hardware address is
  not the frame's source (a router's proxy ARP speaks for others).
- limits: per MAC and per segment (`Learning.max_ips_per_mac`, `max_ips_per_segment`).
- expiry: bindings go with their MAC (idle, or its port left).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from controller.config import Learning

Outcome = Literal["learned", "moved", "known", "mac_full", "segment_full"]

ETH_ARP, ETH_IPV6 = 0x0806, 0x86DD
ICMPV6, ND_SOLICIT, ND_ADVERT = 58, 135, 136
_ARP_OPS = (b"\x00\x01", b"\x00\x02")


@dataclass(frozen=True)
class Neighbour:
    """An IP address and the host MAC that owns it, in one segment."""

    segment: str
    ip: str  # compressed text form (ipaddress), as OpenFlow matches are written
    mac: str
    since: float


def sender(frame: bytes) -> tuple[str, str] | None:
    """(IP, MAC) a host says it has in an untagged ARP or ND frame, or None.

    ARP (RFC 826): Ethernet/IPv4 only, the sender fields. ND (RFC 4861 section 4.3/4.4):
    an ICMPv6 NS or NA right after the IPv6 header with hop limit 255 (section 7.1.1,
    7.1.2: anything else is not ND), its source address.
    """
    if len(frame) < 42:
        return None
    mac = frame[6:12]
    eth_type = int.from_bytes(frame[12:14], "big")
    if eth_type == ETH_ARP:
        # Ethernet (1), IPv4 (0x0800), 6- and 4-byte addresses; a request or a reply.
        if frame[14:20] != b"\x00\x01\x08\x00\x06\x04" or frame[20:22] not in _ARP_OPS:
            return None
        if frame[22:28] != mac:
            return None
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(frame[28:32])
    elif eth_type == ETH_IPV6:
        if len(frame) < 58 or frame[20] != ICMPV6 or frame[21] != 255:
            return None
        if frame[54] not in (ND_SOLICIT, ND_ADVERT) or frame[55] != 0:
            return None
        ip = ipaddress.IPv6Address(frame[22:38])
    else:
        return None
    if not usable(ip):
        return None
    return str(ip), ":".join(f"{b:02x}" for b in mac)


def usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address one host owns (not unspecified, multicast, broadcast or loopback)."""
    broadcast = isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address(
        "255.255.255.255"
    )
    return not (ip.is_unspecified or ip.is_multicast or ip.is_loopback or broadcast)


def solicited_node(ip: str) -> str:
    """The solicited-node multicast address of `ip` (RFC 4291 section 2.7.1)."""
    low = int(ipaddress.IPv6Address(ip)) & 0xFFFFFF
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low))


@dataclass
class NeighbourTable:
    limits: Learning
    bindings: dict[tuple[str, str], Neighbour] = field(default_factory=dict)
    # (segment, MAC) -> its addresses, and bindings per segment: limits cost O(1).
    _of_mac: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _in_segment: dict[str, int] = field(default_factory=dict)

    def learn(
        self, segment: str, ip: str, mac: str, now: float
    ) -> tuple[Outcome, Neighbour | None]:
        """Bind `ip` to `mac`; the outcome and, for a move, the old binding."""
        old = self.bindings.get((segment, ip))
        if old is not None and old.mac == mac:
            return "known", old
        if len(self._of_mac.get((segment, mac), ())) >= self.limits.max_ips_per_mac:
            return "mac_full", None
        if old is None and self.count(segment) >= self.limits.max_ips_per_segment:
            return "segment_full", None
        if old is not None:
            self._drop(old)
        self._add(Neighbour(segment, ip, mac, now))
        return ("moved", old) if old is not None else ("learned", None)

    def of_mac(self, segment: str, mac: str) -> list[Neighbour]:
        return [self.bindings[(segment, ip)] for ip in sorted(self._of_mac.get((segment, mac), ()))]

    def forget_mac(self, segment: str, mac: str) -> list[Neighbour]:
        """The MAC is gone: so are its addresses."""
        gone = self.of_mac(segment, mac)
        for n in gone:
            self._drop(n)
        return gone

    def drop(self, keep: Callable[[Neighbour], bool]) -> None:
        """Forget every binding `keep` says no to (after a reload)."""
        for n in [n for n in self.bindings.values() if not keep(n)]:
            self._drop(n)

    def count(self, segment: str) -> int:
        return self._in_segment.get(segment, 0)

    def _add(self, n: Neighbour) -> None:
        self.bindings[(n.segment, n.ip)] = n
        self._of_mac.setdefault((n.segment, n.mac), set()).add(n.ip)
        self._in_segment[n.segment] = self._in_segment.get(n.segment, 0) + 1

    def _drop(self, n: Neighbour) -> None:
        del self.bindings[(n.segment, n.ip)]
        ips = self._of_mac[(n.segment, n.mac)]
        ips.discard(n.ip)
        if not ips:
            del self._of_mac[(n.segment, n.mac)]
        self._in_segment[n.segment] -= 1
