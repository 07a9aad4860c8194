"""The one update model every feed produces and every detector consumes, and the one peer
event that travels in the same stream.

Kept deliberately small and cheap to build: feeds create hundreds of thousands per second.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, final

# An AS_PATH segment of type AS_SET (RFC 4271 section 4.3) is kept as a frozenset.
PathElement = int | frozenset[int]


class Prefix(NamedTuple):
    """An IP prefix as integers: cheap to hash, mask and compare."""

    version: int  # 4 or 6
    value: int  # network address as an integer, host bits zero
    length: int

    def __str__(self) -> str:
        addr = (
            ipaddress.IPv4Address(self.value)
            if self.version == 4
            else ipaddress.IPv6Address(self.value)
        )
        return f"{addr}/{self.length}"

    @classmethod
    def parse(cls, text: str) -> Prefix:
        """ "192.0.2.0/24" -> Prefix; ValueError (ipaddress's words) if it is not one."""
        return _parse(text)

    def covers(self, other: Prefix) -> bool:
        """True if `other` is this prefix or a more-specific of it."""
        if self.version != other.version or other.length < self.length:
            return False
        bits = 32 if self.version == 4 else 128
        return other.value >> (bits - self.length) == self.value >> (bits - self.length)


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> Prefix:
    """Feeds parse the same few hundred thousand prefixes over and over: cached, and the
    common form read with inet_pton (a tenth of ipaddress's cost). Anything else, and every
    error, goes through ipaddress, whose messages say what is wrong."""
    address, slash, length = text.partition("/")
    if ":" in address:
        family, bits, version = socket.AF_INET6, 128, 6
    else:
        family, bits, version = socket.AF_INET, 32, 4
    try:
        value = int.from_bytes(socket.inet_pton(family, address))
    except OSError:
        value = -1
    canonical = length.isdigit() and (length[0] != "0" or length == "0")
    if value >= 0 and slash and canonical:
        n = int(length)
        if n <= bits and not value & ((1 << (bits - n)) - 1):
            return Prefix(version, value, n)
    net = ipaddress.ip_network(text)
    return Prefix(net.version, int(net.network_address), net.prefixlen)


class Update(NamedTuple):
    """One prefix announced or withdrawn by one peer at one time. A named tuple, immutable
    like the frozen dataclasses below but built in a fifth of their time: feeds make hundreds
    of thousands a second (change one with `_replace`)."""

    time: float  # seconds since the epoch, UTC
    peer_ip: str
    peer_asn: int
    prefix: Prefix
    announce: bool  # False: withdrawal
    as_path: tuple[PathElement, ...] = ()
    communities: tuple[tuple[int, int], ...] = ()
    next_hop: str | None = None
    source: str = ""  # feed that produced it, e.g. "mrt:rrc06.updates.gz", "ris-live", "bmp"
    path_id: int | None = None  # RFC 7911 ADD-PATH identifier, when the feed has one
    # RFC 8092 (global administrator, local data 1, local data 2); last so that the feeds'
    # positional construction stays in the order above.
    large_communities: tuple[tuple[int, int, int], ...] = ()

    @property
    def origin(self) -> PathElement | None:
        return self.as_path[-1] if self.as_path else None


@final
@dataclass(frozen=True, slots=True)
class PeerDown:
    """A peer's BGP session left Established: the collector or router deleted every route it
    had learned from that peer (RFC 4271 section 8.2.2), without a withdrawal for any of them.
    Rare next to Updates, so it gets its own type instead of a field on every Update."""

    time: float
    peer_ip: str
    peer_asn: int
    source: str = ""  # feed that saw it, as in Update


@final
@dataclass(frozen=True, slots=True)
class PeerRestarting:
    """A peer's session ended, but the peer will be back (graceful restart, RFC 4724, and
    long-lived graceful restart, RFC 9494): its routes stay, marked stale, until it sends
    End-of-RIB (`EndOfRib`), or are withdrawn by a `PeerDown` if it does not return in time.
    A routine router restart thus withdraws nothing."""

    time: float
    peer_ip: str
    peer_asn: int
    source: str = ""


@final
@dataclass(frozen=True, slots=True)
class EndOfRib:
    """The restarted peer has sent all its routes of IPv`version` again (None: of every
    family): the ones still stale, which it no longer announces, are withdrawn (RFC 4724
    section 4.2)."""

    time: float
    peer_ip: str
    peer_asn: int
    source: str = ""
    version: int | None = None


# What a feed yields: mostly Updates, now and then a peer event.
FeedItem = Update | PeerDown | PeerRestarting | EndOfRib
