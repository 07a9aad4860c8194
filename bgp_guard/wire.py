"""BGP message decoding shared by every feed (MRT, BMP, live session, RIS-live raw).

Decodes what a monitor needs from a BGP UPDATE (RFC 4271 section 4.3): NLRI and withdrawn
routes, ORIGIN, AS_PATH (2- or 4-byte ASNs, RFC 6793, with AS4_PATH merged), NEXT_HOP,
COMMUNITIES (RFC 1997), LARGE_COMMUNITIES (RFC 8092), MP_REACH_NLRI / MP_UNREACH_NLRI for IPv6 (RFC 4760) and ADD-PATH
path identifiers (RFC 7911). Other attributes are skipped by length.

Speed matters (feeds replay hundreds of thousands of updates per second), so everything works
on offsets into one `bytes` with `struct` and `int.from_bytes`; prefixes are built as integers.
Malformed data raises `WireError` carrying the offset into the buffer that was decoded.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from bgp_guard.update import PathElement, Prefix, Update

# RFC 4271 section 4.1: 16-byte marker, 2-byte length, 1-byte type.
HEADER_LEN = 19
MARKER = b"\xff" * 16
MSG_OPEN, MSG_UPDATE, MSG_NOTIFICATION, MSG_KEEPALIVE = 1, 2, 3, 4

# Path attribute type codes (RFC 4271 section 5, RFC 1997, RFC 4760, RFC 6793, RFC 8092).
ATTR_ORIGIN = 1
ATTR_AS_PATH = 2
ATTR_NEXT_HOP = 3
ATTR_COMMUNITIES = 8
ATTR_MP_REACH_NLRI = 14
ATTR_MP_UNREACH_NLRI = 15
ATTR_AS4_PATH = 17
ATTR_LARGE_COMMUNITIES = 32
FLAG_EXTENDED_LENGTH = 0x10

# AS_PATH segment types: RFC 4271 section 4.3, confederations RFC 5065 section 3.
AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET = 1, 2, 3, 4

AFI_IPV4, AFI_IPV6 = 1, 2
SAFI_UNICAST = 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ATTR_HDR = struct.Struct(">BBB")  # flags, type, 1-byte length
_ATTR_HDR_EXT = struct.Struct(">BBH")  # flags, type, 2-byte length (extended-length flag)
_MP_HDR = struct.Struct(">HBB")  # AFI, SAFI, next-hop length

# Host-bit masks per prefix length, so a sloppy sender's host bits never reach a detector.
_MASK = {
    4: [((1 << n) - 1) << (32 - n) for n in range(33)],
    6: [((1 << n) - 1) << (128 - n) for n in range(129)],
}
_BITS = {4: 32, 6: 128}
_AFI_VERSION = {AFI_IPV4: 4, AFI_IPV6: 6}

# A prefix with its RFC 7911 path identifier (None without ADD-PATH).
Nlri = tuple[Prefix, int | None]
# Which NLRI carry ADD-PATH identifiers: all (True), none (False), or those of the given AFIs
# (a session negotiates ADD-PATH per address family, RFC 7911 section 4).
AddPath = bool | frozenset[int]


def _path_ids(add_path: AddPath, afi: int) -> bool:
    return add_path if isinstance(add_path, bool) else afi in add_path


class WireError(ValueError):
    """Malformed BGP data. `offset` is the byte offset into the buffer being decoded."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


def _make_prefix(version: int, value: int, length: int) -> Prefix:
    # tuple.__new__ skips NamedTuple's Python-level __new__: this runs once per route.
    return tuple.__new__(Prefix, (version, value, length))


def decode_prefixes(
    data: bytes, off: int, end: int, version: int, add_path: bool = False
) -> list[Nlri]:
    """NLRI encoding of RFC 4271 section 4.3 (length in bits, then the significant bytes),
    each preceded by a 4-byte path identifier when ADD-PATH is in use (RFC 7911 section 3)."""
    out: list[Nlri] = []
    bits = _BITS[version]
    masks = _MASK[version]
    from_bytes = int.from_bytes
    while off < end:
        path_id = None
        if add_path:
            if off + 4 > end:
                raise WireError("truncated ADD-PATH path identifier", off)
            (path_id,) = _U32.unpack_from(data, off)
            off += 4
            if off >= end:
                raise WireError("ADD-PATH path identifier without a prefix", off)
        length = data[off]
        if length > bits:
            raise WireError(f"IPv{version} prefix length {length} > {bits}", off)
        nbytes = (length + 7) >> 3
        start = off + 1
        off = start + nbytes
        if off > end:
            raise WireError(f"prefix of /{length} runs past the end of its field", start - 1)
        value = (from_bytes(data[start:off]) << (bits - 8 * nbytes)) & masks[length]
        out.append((_make_prefix(version, value, length), path_id))
    return out


def decode_as_path(data: bytes, off: int, end: int, asn4: bool) -> tuple[PathElement, ...]:
    """AS_PATH / AS4_PATH segments (RFC 4271 section 4.3, RFC 6793 section 3).

    AS_SEQUENCE members become ints, an AS_SET one frozenset. Confederation segments
    (RFC 5065) are dropped: they are internal to the neighbour and never an origin.
    """
    path: list[PathElement] = []
    width = 4 if asn4 else 2
    code = "I" if asn4 else "H"
    while off < end:
        if off + 2 > end:
            raise WireError("truncated AS_PATH segment header", off)
        seg_type = data[off]
        count = data[off + 1]
        start = off + 2
        off = start + count * width
        if off > end:
            raise WireError(f"AS_PATH segment of {count} ASNs runs past the attribute", start - 2)
        if count == 0:
            raise WireError("empty AS_PATH segment", start - 2)
        asns = struct.unpack_from(f">{count}{code}", data, start)
        if seg_type == AS_SEQUENCE:
            path.extend(asns)
        elif seg_type == AS_SET:
            path.append(frozenset(asns))
        elif seg_type not in (AS_CONFED_SEQUENCE, AS_CONFED_SET):
            raise WireError(f"unknown AS_PATH segment type {seg_type}", start - 2)
    return tuple(path)


def merge_as4_path(
    as_path: tuple[PathElement, ...], as4_path: tuple[PathElement, ...]
) -> tuple[PathElement, ...]:
    """RFC 6793 section 4.2.3: keep the leading AS_PATH entries that AS4_PATH lacks, then
    AS4_PATH. An AS4_PATH longer than AS_PATH is ignored. (An AS_SET counts as one ASN and
    confederation segments were already dropped, exactly as that section counts.)"""
    extra = len(as_path) - len(as4_path)
    if extra < 0:
        return as_path
    return as_path[:extra] + as4_path


def _next_hop_text(raw: bytes) -> str | None:
    """A next hop as text: IPv4, or IPv6 global (a 32-byte field adds a link-local, RFC 2545
    section 3). Anything else (VPN next hops and so on) is not an address a monitor needs."""
    if len(raw) == 4:
        return socket.inet_ntoa(raw)
    if len(raw) in (16, 32):
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return None


def ip_text(raw: bytes) -> str:
    """A 4- or 16-byte address as text."""
    if len(raw) == 4:
        return socket.inet_ntoa(raw)
    return socket.inet_ntop(socket.AF_INET6, raw)


@dataclass(slots=True)
class PathAttributes:
    """The attributes of one UPDATE (or one RIB entry) that detectors use."""

    origin: int | None = None  # RFC 4271 section 5.1.1: 0 IGP, 1 EGP, 2 INCOMPLETE
    as_path: tuple[PathElement, ...] = ()
    next_hop: str | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    mp_next_hop: str | None = None
    mp_reach: list[Nlri] = field(default_factory=list)
    mp_unreach: list[Nlri] = field(default_factory=list)


def decode_attributes(
    data: bytes,
    off: int,
    end: int,
    *,
    asn4: bool,
    add_path: AddPath = False,
    rib_entry: bool = False,
) -> PathAttributes:
    """Path attributes between `off` and `end` (RFC 4271 section 4.3).

    `asn4`: AS_PATH carries 4-byte ASNs (RFC 6793); otherwise AS4_PATH is merged in.
    `rib_entry`: an MRT TABLE_DUMP_V2 RIB entry, whose MP_REACH_NLRI holds only the next hop
    (RFC 6396 section 4.3.4).
    """
    attrs = PathAttributes()
    as4_path: tuple[PathElement, ...] | None = None
    while off < end:
        if off + 3 > end:
            raise WireError("truncated path attribute header", off)
        flags = data[off]
        if flags & FLAG_EXTENDED_LENGTH:
            if off + 4 > end:
                raise WireError("truncated extended-length attribute header", off)
            _, code, length = _ATTR_HDR_EXT.unpack_from(data, off)
            start = off + 4
        else:
            _, code, length = _ATTR_HDR.unpack_from(data, off)
            start = off + 3
        stop = start + length
        if stop > end:
            raise WireError(f"attribute type {code} of {length} bytes runs past the end", off)
        if code == ATTR_AS_PATH:
            attrs.as_path = decode_as_path(data, start, stop, asn4)
        elif code == ATTR_NEXT_HOP:
            if length != 4:
                raise WireError(f"NEXT_HOP of {length} bytes, expected 4", off)
            attrs.next_hop = socket.inet_ntoa(data[start:stop])
        elif code == ATTR_COMMUNITIES:
            if length % 4:
                raise WireError(f"COMMUNITIES of {length} bytes, not a multiple of 4", off)
            values = struct.unpack_from(f">{length // 2}H", data, start)
            attrs.communities = tuple(zip(values[::2], values[1::2], strict=True))
        elif code == ATTR_ORIGIN:
            if length != 1:
                raise WireError(f"ORIGIN of {length} bytes, expected 1", off)
            attrs.origin = data[start]
        elif code == ATTR_MP_REACH_NLRI:
            _decode_mp_reach(data, start, stop, attrs, add_path, rib_entry)
        elif code == ATTR_MP_UNREACH_NLRI:
            if length < 3:
                raise WireError("MP_UNREACH_NLRI shorter than AFI and SAFI", off)
            afi, safi = _U16.unpack_from(data, start)[0], data[start + 2]
            version = _AFI_VERSION.get(afi)
            if version and safi == SAFI_UNICAST:
                attrs.mp_unreach = decode_prefixes(
                    data, start + 3, stop, version, _path_ids(add_path, afi)
                )
        elif code == ATTR_AS4_PATH and not asn4:
            as4_path = decode_as_path(data, start, stop, True)
        elif code == ATTR_LARGE_COMMUNITIES:
            # RFC 8092 section 3: global administrator, local data 1, local data 2, each a
            # 4-byte integer. Malformed unless a non-zero multiple of 12 bytes (section 6).
            if not length or length % 12:
                raise WireError(
                    f"LARGE_COMMUNITIES of {length} bytes, not a non-zero multiple of 12", off
                )
            values = struct.unpack_from(f">{length // 4}I", data, start)
            attrs.large_communities = tuple(
                zip(values[::3], values[1::3], values[2::3], strict=True)
            )
        off = stop
    if as4_path is not None:
        attrs.as_path = merge_as4_path(attrs.as_path, as4_path)
    return attrs


def _decode_mp_reach(
    data: bytes, start: int, stop: int, attrs: PathAttributes, add_path: AddPath, rib_entry: bool
) -> None:
    """MP_REACH_NLRI, RFC 4760 section 3. In a TABLE_DUMP_V2 RIB entry the attribute is cut
    down to next-hop length and next hop (RFC 6396 section 4.3.4); some writers still store
    the full form, which is recognised by its length not matching."""
    if rib_entry and stop - start >= 1 and data[start] == stop - start - 1:
        attrs.mp_next_hop = _next_hop_text(data[start + 1 : stop])
        return
    if stop - start < 5:
        raise WireError("MP_REACH_NLRI shorter than its fixed fields", start)
    afi, safi, nh_len = _MP_HDR.unpack_from(data, start)
    nh_start = start + 4
    nlri_start = nh_start + nh_len + 1  # one reserved byte after the next hop
    if nlri_start > stop:
        raise WireError(f"MP_REACH_NLRI next hop of {nh_len} bytes runs past the end", start)
    attrs.mp_next_hop = _next_hop_text(data[nh_start : nh_start + nh_len])
    version = _AFI_VERSION.get(afi)
    if version and safi == SAFI_UNICAST and not rib_entry:
        attrs.mp_reach = decode_prefixes(data, nlri_start, stop, version, _path_ids(add_path, afi))


@dataclass(slots=True)
class UpdateMessage:
    """A decoded BGP UPDATE: what it withdraws, what it announces and with which attributes."""

    withdrawn: list[Nlri]
    announced: list[Nlri]
    attrs: PathAttributes

    def updates(self, time: float, peer_ip: str, peer_asn: int, source: str) -> list[Update]:
        """One Update per prefix, withdrawals first (the order they take effect in)."""
        out = [
            Update(time, peer_ip, peer_asn, prefix, False, source=source, path_id=path_id)
            for prefix, path_id in self.withdrawn + self.attrs.mp_unreach
        ]
        a = self.attrs
        for nlri, next_hop in ((self.announced, a.next_hop), (a.mp_reach, a.mp_next_hop)):
            for prefix, path_id in nlri:
                out.append(
                    Update(
                        time,
                        peer_ip,
                        peer_asn,
                        prefix,
                        True,
                        a.as_path,
                        a.communities,
                        next_hop,
                        source,
                        path_id,
                        a.large_communities,
                    )
                )
        return out


def decode_update(
    data: bytes, off: int = 0, end: int | None = None, *, asn4: bool, add_path: AddPath = False
) -> UpdateMessage:
    """The body of an UPDATE (after the 19-byte header), RFC 4271 section 4.3."""
    if end is None:
        end = len(data)
    if off + 2 > end:
        raise WireError("UPDATE too short for the withdrawn-routes length", off)
    (wlen,) = _U16.unpack_from(data, off)
    wstart = off + 2
    wend = wstart + wlen
    if wend + 2 > end:
        raise WireError(f"withdrawn routes of {wlen} bytes run past the UPDATE", off)
    ipv4_ids = _path_ids(add_path, AFI_IPV4)
    withdrawn = decode_prefixes(data, wstart, wend, 4, ipv4_ids)
    (alen,) = _U16.unpack_from(data, wend)
    astart = wend + 2
    aend = astart + alen
    if aend > end:
        raise WireError(f"path attributes of {alen} bytes run past the UPDATE", wend)
    attrs = decode_attributes(data, astart, aend, asn4=asn4, add_path=add_path)
    announced = decode_prefixes(data, aend, end, 4, ipv4_ids)
    return UpdateMessage(withdrawn, announced, attrs)


def decode_header(data: bytes, off: int = 0) -> tuple[int, int]:
    """The 19-byte header at `off` (RFC 4271 section 4.1): (message type, total length)."""
    if off + HEADER_LEN > len(data):
        raise WireError("truncated BGP message header", off)
    if data[off : off + 16] != MARKER:
        raise WireError("BGP marker is not all ones", off)
    (length,) = _U16.unpack_from(data, off + 16)
    if length < HEADER_LEN:
        raise WireError(f"BGP message length {length} is below the header size", off + 16)
    return data[off + 18], length


def split_message(data: bytes, off: int = 0, end: int | None = None) -> tuple[int, int, int]:
    """Check the BGP header at `off`; returns (type, body start, body end). The message must
    fit before `end`."""
    if end is None:
        end = len(data)
    mtype, length = decode_header(data[: min(end, off + HEADER_LEN)], off)
    if off + length > end:
        raise WireError(f"BGP message length {length} does not fit its buffer", off + 16)
    return mtype, off + HEADER_LEN, off + length


def encode_message(mtype: int, body: bytes = b"") -> bytes:
    """Header plus body (RFC 4271 section 4.1)."""
    return MARKER + struct.pack(">HB", HEADER_LEN + len(body), mtype) + body


KEEPALIVE = encode_message(MSG_KEEPALIVE)  # RFC 4271 section 4.4: the header alone

# OPEN optional parameter 2 carries capabilities (RFC 5492 section 4).
PARAM_CAPABILITIES = 2
CAP_MULTIPROTOCOL = 1  # RFC 4760 section 8
CAP_AS4 = 65  # RFC 6793 section 3
CAP_ADD_PATH = 69  # RFC 7911 section 4
ADD_PATH_RECEIVE, ADD_PATH_SEND = 1, 2  # bits of its Send/Receive field
AS_TRANS = 23456  # RFC 6793 section 9: the 2-byte stand-in for a 4-byte ASN


@dataclass(frozen=True, slots=True)
class Open:
    """An OPEN (RFC 4271 section 4.2) with the capabilities a monitor negotiates."""

    asn: int  # the real ASN: from the 4-octet AS capability when present
    hold_time: int
    router_id: str
    families: frozenset[tuple[int, int]] = frozenset()  # (AFI, SAFI), RFC 4760
    asn4: bool = False  # the 4-octet AS capability was sent, RFC 6793
    version: int = 4
    # ADD-PATH, RFC 7911 section 4: (AFI, SAFI, Send/Receive bits) per family.
    add_path: tuple[tuple[int, int, int], ...] = ()

    def sends_path_ids_to(self, receiver: Open) -> frozenset[int]:
        """AFIs (unicast) whose UPDATEs from this speaker to `receiver` carry path
        identifiers: this side offered to send and the other to receive."""
        sends = {(a, s) for a, s, bits in self.add_path if bits & ADD_PATH_SEND}
        receives = {(a, s) for a, s, bits in receiver.add_path if bits & ADD_PATH_RECEIVE}
        return frozenset(a for a, s in sends & receives if s == SAFI_UNICAST)

    def encode(self) -> bytes:
        caps = b"".join(
            struct.pack(">BBHBB", CAP_MULTIPROTOCOL, 4, afi, 0, safi)
            for afi, safi in sorted(self.families)
        )
        if self.asn4:
            caps += struct.pack(">BBI", CAP_AS4, 4, self.asn)
        if self.add_path:
            value = b"".join(struct.pack(">HBB", *entry) for entry in self.add_path)
            caps += struct.pack(">BB", CAP_ADD_PATH, len(value)) + value
        params = struct.pack(">BB", PARAM_CAPABILITIES, len(caps)) + caps if caps else b""
        two_byte_asn = self.asn if self.asn < 65536 else AS_TRANS
        body = struct.pack(
            ">BHH4sB",
            self.version,
            two_byte_asn,
            self.hold_time,
            socket.inet_aton(self.router_id),
            len(params),
        )
        return encode_message(MSG_OPEN, body + params)

    @classmethod
    def decode(cls, body: bytes) -> Open:
        if len(body) < 10:
            raise WireError("OPEN shorter than its fixed fields", 0)
        version, asn, hold_time, router_id, params_len = struct.unpack_from(">BHH4sB", body)
        if 10 + params_len > len(body):
            raise WireError(f"OPEN optional parameters of {params_len} bytes run past it", 9)
        families: set[tuple[int, int]] = set()
        add_path: list[tuple[int, int, int]] = []
        asn4 = False
        off = 10
        while off < 10 + params_len:
            if off + 2 > len(body):
                raise WireError("truncated OPEN optional parameter", off)
            ptype, plen = body[off], body[off + 1]
            pend = off + 2 + plen
            if pend > len(body):
                raise WireError("OPEN optional parameter runs past the message", off)
            cap = off + 2
            while ptype == PARAM_CAPABILITIES and cap < pend:
                if cap + 2 > pend:
                    raise WireError("truncated capability", cap)
                code, clen = body[cap], body[cap + 1]
                value = body[cap + 2 : cap + 2 + clen]
                if len(value) != clen:
                    raise WireError(f"capability {code} runs past its parameter", cap)
                if code == CAP_MULTIPROTOCOL and clen == 4:
                    afi, _, safi = struct.unpack(">HBB", value)
                    families.add((afi, safi))
                elif code == CAP_AS4 and clen == 4:
                    (asn,) = _U32.unpack(value)
                    asn4 = True
                elif code == CAP_ADD_PATH and clen % 4 == 0:
                    add_path.extend(struct.iter_unpack(">HBB", value))
                cap += 2 + clen
            off = pend
        return cls(
            asn,
            hold_time,
            socket.inet_ntoa(router_id),
            frozenset(families),
            asn4,
            version,
            tuple(add_path),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """NOTIFICATION, RFC 4271 section 4.5 (codes in section 6)."""

    code: int
    subcode: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        return encode_message(MSG_NOTIFICATION, bytes((self.code, self.subcode)) + self.data)

    @classmethod
    def decode(cls, body: bytes) -> Notification:
        if len(body) < 2:
            raise WireError("NOTIFICATION shorter than code and subcode", 0)
        return cls(body[0], body[1], bytes(body[2:]))

    def __str__(self) -> str:
        return f"NOTIFICATION {self.code}/{self.subcode}" + (
            f" data {self.data.hex()}" if self.data else ""
        )
