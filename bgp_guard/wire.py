"""BGP message decoding shared by every feed (MRT, BMP, live session, RIS-live raw).

Decodes what a monitor needs from a BGP UPDATE (RFC 4271 section 4.3): NLRI and withdrawn
routes, ORIGIN, AS_PATH (2- or 4-byte ASNs, RFC 6793, with AS4_PATH merged), NEXT_HOP,
COMMUNITIES (RFC 1997), LARGE_COMMUNITIES (RFC 8092), MP_REACH_NLRI / MP_UNREACH_NLRI for IPv6
(RFC 4760) and ADD-PATH path identifiers (RFC 7911). Other attributes are skipped by length.

Errors follow RFC 7606 (revised UPDATE error handling): a malformed attribute whose UPDATE
can still be read raises `TreatAsWithdraw`, carrying every route the UPDATE names so that
they can be withdrawn; an attribute whose error only costs itself (ATOMIC_AGGREGATE,
AGGREGATOR, AS4_PATH, AS4_AGGREGATOR) is dropped and listed in `PathAttributes.discarded`;
anything that hides where the routes are (NLRI, MP_REACH_NLRI, the attribute list's own
lengths) raises a plain `WireError`, for which RFC 7606 keeps the session reset.
`WireError.subcode` and `.data` are the NOTIFICATION's (RFC 4271 section 6).

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
ATTR_MULTI_EXIT_DISC = 4
ATTR_LOCAL_PREF = 5
ATTR_ATOMIC_AGGREGATE = 6
ATTR_AGGREGATOR = 7
ATTR_COMMUNITIES = 8
ATTR_ORIGINATOR_ID = 9  # RFC 4456
ATTR_CLUSTER_LIST = 10  # RFC 4456
ATTR_MP_REACH_NLRI = 14
ATTR_MP_UNREACH_NLRI = 15
ATTR_EXTENDED_COMMUNITIES = 16  # RFC 4360
ATTR_AS4_PATH = 17
ATTR_AS4_AGGREGATOR = 18  # RFC 6793
ATTR_IPV6_EXTENDED_COMMUNITIES = 25  # RFC 5701
ATTR_LARGE_COMMUNITIES = 32
FLAG_OPTIONAL, FLAG_TRANSITIVE, FLAG_EXTENDED_LENGTH = 0x80, 0x40, 0x10
_WELL_KNOWN, _OPTIONAL, _OPTIONAL_TRANSITIVE = FLAG_TRANSITIVE, FLAG_OPTIONAL, 0xC0

# The Optional and Transitive bits each known attribute must carry; a conflict makes it
# malformed (RFC 7606 section 3 c).
ATTR_FLAGS = {
    ATTR_ORIGIN: _WELL_KNOWN,
    ATTR_AS_PATH: _WELL_KNOWN,
    ATTR_NEXT_HOP: _WELL_KNOWN,
    ATTR_MULTI_EXIT_DISC: _OPTIONAL,
    ATTR_LOCAL_PREF: _WELL_KNOWN,
    ATTR_ATOMIC_AGGREGATE: _WELL_KNOWN,
    ATTR_AGGREGATOR: _OPTIONAL_TRANSITIVE,
    ATTR_COMMUNITIES: _OPTIONAL_TRANSITIVE,
    ATTR_ORIGINATOR_ID: _OPTIONAL,
    ATTR_CLUSTER_LIST: _OPTIONAL,
    ATTR_MP_REACH_NLRI: _OPTIONAL,
    ATTR_MP_UNREACH_NLRI: _OPTIONAL,
    ATTR_EXTENDED_COMMUNITIES: _OPTIONAL_TRANSITIVE,
    ATTR_AS4_PATH: _OPTIONAL_TRANSITIVE,
    ATTR_AS4_AGGREGATOR: _OPTIONAL_TRANSITIVE,
    ATTR_IPV6_EXTENDED_COMMUNITIES: _OPTIONAL_TRANSITIVE,
    ATTR_LARGE_COMMUNITIES: _OPTIONAL_TRANSITIVE,
}
ATTR_NAMES = {
    ATTR_ORIGIN: "ORIGIN",
    ATTR_AS_PATH: "AS_PATH",
    ATTR_NEXT_HOP: "NEXT_HOP",
    ATTR_MULTI_EXIT_DISC: "MULTI_EXIT_DISC",
    ATTR_LOCAL_PREF: "LOCAL_PREF",
    ATTR_ATOMIC_AGGREGATE: "ATOMIC_AGGREGATE",
    ATTR_AGGREGATOR: "AGGREGATOR",
    ATTR_COMMUNITIES: "COMMUNITIES",
    ATTR_ORIGINATOR_ID: "ORIGINATOR_ID",
    ATTR_CLUSTER_LIST: "CLUSTER_LIST",
    ATTR_MP_REACH_NLRI: "MP_REACH_NLRI",
    ATTR_MP_UNREACH_NLRI: "MP_UNREACH_NLRI",
    ATTR_EXTENDED_COMMUNITIES: "EXTENDED_COMMUNITIES",
    ATTR_AS4_PATH: "AS4_PATH",
    ATTR_AS4_AGGREGATOR: "AS4_AGGREGATOR",
    ATTR_IPV6_EXTENDED_COMMUNITIES: "IPv6_EXTENDED_COMMUNITIES",
    ATTR_LARGE_COMMUNITIES: "LARGE_COMMUNITIES",
}
# Lengths RFC 7606 section 7 checks: exact ones, and non-zero multiples of a unit (RFC 8092
# section 6 for LARGE_COMMUNITIES). AGGREGATOR's depends on the ASN width.
_ATTR_LENGTH = {
    ATTR_ORIGIN: 1,
    ATTR_NEXT_HOP: 4,
    ATTR_MULTI_EXIT_DISC: 4,
    ATTR_LOCAL_PREF: 4,
    ATTR_ATOMIC_AGGREGATE: 0,
    ATTR_ORIGINATOR_ID: 4,
    ATTR_AS4_AGGREGATOR: 8,
}
_ATTR_UNIT = {
    ATTR_COMMUNITIES: 4,
    ATTR_CLUSTER_LIST: 4,
    ATTR_EXTENDED_COMMUNITIES: 8,
    ATTR_IPV6_EXTENDED_COMMUNITIES: 20,
    ATTR_LARGE_COMMUNITIES: 12,
}
# An error in these costs only the attribute: RFC 7606 sections 7.6 and 7.7, RFC 6793
# section 6.
_DISCARD_ON_ERROR = frozenset(
    {ATTR_ATOMIC_AGGREGATE, ATTR_AGGREGATOR, ATTR_AS4_PATH, ATTR_AS4_AGGREGATOR}
)
_MP_ATTRS = frozenset({ATTR_MP_REACH_NLRI, ATTR_MP_UNREACH_NLRI})

# NOTIFICATION error codes (RFC 4271 section 4.5) and subcodes (section 6, RFC 4486,
# RFC 6608, RFC 8203).
HEADER_ERROR, OPEN_ERROR, UPDATE_ERROR, HOLD_TIMER_EXPIRED, FSM_ERROR, CEASE = 1, 2, 3, 4, 5, 6
CONNECTION_NOT_SYNCHRONIZED, BAD_MESSAGE_LENGTH, BAD_MESSAGE_TYPE = 1, 2, 3
UNSUPPORTED_VERSION, BAD_PEER_AS, BAD_BGP_IDENTIFIER, UNSUPPORTED_PARAMETER = 1, 2, 3, 4
UNACCEPTABLE_HOLD_TIME = 6
MALFORMED_ATTRIBUTE_LIST, UNRECOGNIZED_WELL_KNOWN, MISSING_WELL_KNOWN = 1, 2, 3
ATTRIBUTE_FLAGS_ERROR, ATTRIBUTE_LENGTH_ERROR, INVALID_ORIGIN = 4, 5, 6
INVALID_NEXT_HOP, OPTIONAL_ATTRIBUTE_ERROR, INVALID_NETWORK_FIELD, MALFORMED_AS_PATH = 8, 9, 10, 11
ADMINISTRATIVE_SHUTDOWN, ADMINISTRATIVE_RESET, CONNECTION_COLLISION, HARD_RESET = 2, 4, 7, 9
NOTIFICATION_NAMES: dict[int, tuple[str, dict[int, str]]] = {
    HEADER_ERROR: (
        "Message Header Error",
        {1: "Connection Not Synchronized", 2: "Bad Message Length", 3: "Bad Message Type"},
    ),
    OPEN_ERROR: (
        "OPEN Message Error",
        {
            1: "Unsupported Version Number",
            2: "Bad Peer AS",
            3: "Bad BGP Identifier",
            4: "Unsupported Optional Parameter",
            6: "Unacceptable Hold Time",
            7: "Unsupported Capability",
            11: "Role Mismatch",
        },
    ),
    UPDATE_ERROR: (
        "UPDATE Message Error",
        {
            1: "Malformed Attribute List",
            2: "Unrecognized Well-known Attribute",
            3: "Missing Well-known Attribute",
            4: "Attribute Flags Error",
            5: "Attribute Length Error",
            6: "Invalid ORIGIN Attribute",
            8: "Invalid NEXT_HOP Attribute",
            9: "Optional Attribute Error",
            10: "Invalid Network Field",
            11: "Malformed AS_PATH",
        },
    ),
    HOLD_TIMER_EXPIRED: ("Hold Timer Expired", {}),
    FSM_ERROR: (
        "Finite State Machine Error",
        {
            1: "Unexpected Message in OpenSent",
            2: "Unexpected Message in OpenConfirm",
            3: "Unexpected Message in Established",
        },
    ),
    CEASE: (
        "Cease",
        {
            1: "Maximum Number of Prefixes Reached",
            2: "Administrative Shutdown",
            3: "Peer De-configured",
            4: "Administrative Reset",
            5: "Connection Rejected",
            6: "Other Configuration Change",
            7: "Connection Collision Resolution",
            8: "Out of Resources",
            9: "Hard Reset",
            10: "BFD Down",
        },
    ),
    7: ("ROUTE-REFRESH Message Error", {1: "Invalid Message Length"}),
    8: ("Send Hold Timer Expired", {}),
}

# Message sizes: RFC 4271 section 4.1 (4,096 at most), RFC 8654 section 4 (65,535 once
# both sides advertised extended messages; OPEN and KEEPALIVE stay within 4,096).
MAX_MESSAGE = 4096
MAX_EXTENDED_MESSAGE = 65535
# RFC 4271 section 6.1: the shortest each type can be (KEEPALIVE: exactly the header).
_MIN_LENGTH = {MSG_OPEN: 29, MSG_UPDATE: 23, MSG_NOTIFICATION: 21, MSG_KEEPALIVE: 19}

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
    """Malformed BGP data. `offset` is the byte offset into the buffer being decoded;
    `subcode` and `data` are what a NOTIFICATION about it carries (RFC 4271 section 6)."""

    def __init__(self, reason: str, offset: int, subcode: int = 0, data: bytes = b"") -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset
        self.subcode = subcode
        self.data = data


class TreatAsWithdraw(WireError):
    """RFC 7606 section 2 "treat-as-withdraw": the UPDATE is malformed but its routes can be
    found; each of them counts as withdrawn and the session stays up. `message` is the
    UPDATE as decoded (set by `decode_update`; `attrs` by `decode_attributes`)."""

    message: UpdateMessage | None = None
    attrs: PathAttributes | None = None


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
    present: int = 0  # bit n set: attribute type n was present
    # (type code, why) of each attribute dropped by RFC 7606 "attribute discard"
    discarded: tuple[tuple[int, str], ...] = ()
    # (AFI, SAFI) of MP_REACH_NLRI / MP_UNREACH_NLRI other than IPv4/IPv6 unicast: skipped
    other_families: tuple[tuple[int, int], ...] = ()

    def has(self, code: int) -> bool:
        return bool(self.present >> code & 1)


def decode_attributes(
    data: bytes,
    off: int,
    end: int,
    *,
    asn4: bool,
    add_path: AddPath = False,
    rib_entry: bool = False,
) -> PathAttributes:
    """Path attributes between `off` and `end` (RFC 4271 section 4.3), checked as RFC 7606
    says: raises `TreatAsWithdraw` (after reading every attribute it can, so that the
    routes of MP_REACH_NLRI / MP_UNREACH_NLRI are known) or `WireError` (session reset);
    attributes dropped by "attribute discard" are listed in `discarded`.

    `asn4`: AS_PATH carries 4-byte ASNs (RFC 6793); otherwise AS4_PATH is merged in.
    `rib_entry`: an MRT TABLE_DUMP_V2 RIB entry, whose MP_REACH_NLRI holds only the next hop
    (RFC 6396 section 4.3.4).
    """
    attrs = PathAttributes()
    as4_path: tuple[PathElement, ...] | None = None
    malformed: TreatAsWithdraw | None = None
    present = 0
    # MRT RIB dumps are not wire messages: writers such as bird2 store NEXT_HOP with flags 0.
    category = 0 if rib_entry else _OPTIONAL_TRANSITIVE
    rules = _RULES[asn4, rib_entry]
    while off < end:
        flags = data[off]
        at = off
        if flags & FLAG_EXTENDED_LENGTH:
            if off + 4 > end:  # RFC 7606 section 4: the attribute list is cut short
                malformed = malformed or TreatAsWithdraw(
                    "truncated extended-length attribute header", off, MALFORMED_ATTRIBUTE_LIST
                )
                break
            _, code, length = _ATTR_HDR_EXT.unpack_from(data, off)
            start = off + 4
        else:
            if off + 3 > end:
                malformed = malformed or TreatAsWithdraw(
                    "truncated path attribute header", off, MALFORMED_ATTRIBUTE_LIST
                )
                break
            _, code, length = _ATTR_HDR.unpack_from(data, off)
            start = off + 3
        stop = start + length
        if stop > end:
            malformed = malformed or TreatAsWithdraw(
                f"attribute type {code} of {length} bytes runs past the end",
                off,
                ATTRIBUTE_LENGTH_ERROR,
                data[off:end],
            )
            break
        off = stop
        if present >> code & 1:
            # RFC 7606 section 3 g: a repeated MP attribute hides which routes are meant.
            if code in _MP_ATTRS:
                raise WireError(f"{ATTR_NAMES[code]} appears twice", at, MALFORMED_ATTRIBUTE_LIST)
            attrs.discarded += ((code, "repeated"),)
            continue
        present |= 1 << code
        rule = rules.get(code)
        if rule is None:
            if not flags & FLAG_OPTIONAL:  # RFC 4271 section 6.3; RFC 7606 keeps it
                raise WireError(
                    f"unrecognized well-known attribute type {code}",
                    at,
                    UNRECOGNIZED_WELL_KNOWN,
                    data[at:stop],
                )
            continue  # an optional attribute we do not use
        expected, exact, unit = rule
        problem = None
        if (
            flags & category != expected
            or (exact >= 0 and length != exact)
            or (unit and (not length or length % unit))
        ):
            problem, subcode = _attribute_problem(flags, length, expected, exact, unit)
        if problem is None or code in _MP_ATTRS:
            # MP attributes are read even with wrong flags: their routes are what a
            # treat-as-withdraw withdraws. Their own errors raise WireError.
            try:
                if code == ATTR_AS_PATH:
                    attrs.as_path = decode_as_path(data, start, stop, asn4)
                elif code == ATTR_NEXT_HOP:
                    attrs.next_hop = socket.inet_ntoa(data[start:stop])
                elif code == ATTR_COMMUNITIES:
                    values = struct.unpack_from(f">{length // 2}H", data, start)
                    attrs.communities = tuple(zip(values[::2], values[1::2], strict=True))
                elif code == ATTR_ORIGIN:
                    attrs.origin = data[start]
                    if attrs.origin > 2:
                        raise WireError(f"ORIGIN value {attrs.origin}", at, INVALID_ORIGIN)
                elif code == ATTR_MP_REACH_NLRI:
                    _decode_mp_reach(data, start, stop, attrs, add_path, rib_entry)
                elif code == ATTR_MP_UNREACH_NLRI:
                    _decode_mp_unreach(data, start, stop, attrs, add_path)
                elif code == ATTR_AS4_PATH:
                    if asn4:  # RFC 6793 section 6: a NEW speaker's AS4_PATH is discarded
                        attrs.discarded += ((code, "AS4_PATH from a 4-byte ASN speaker"),)
                    else:
                        as4_path = decode_as_path(data, start, stop, True)
                elif code == ATTR_LARGE_COMMUNITIES:
                    # RFC 8092 section 3: global administrator, local data 1 and 2.
                    values = struct.unpack_from(f">{length // 4}I", data, start)
                    attrs.large_communities = tuple(
                        zip(values[::3], values[1::3], values[2::3], strict=True)
                    )
            except WireError as exc:
                if code in _MP_ATTRS:
                    raise
                problem, subcode = exc.reason, exc.subcode or _SUBCODE.get(code, 0)
                at = exc.offset
        if problem is None:
            continue
        name = ATTR_NAMES[code]
        if code in _DISCARD_ON_ERROR:
            attrs.discarded += ((code, f"{name} {problem}"),)
        elif malformed is None:
            reason = problem if name in problem else f"{name} {problem}"
            malformed = TreatAsWithdraw(reason, at, subcode, data[at:stop])
    attrs.present = present
    if as4_path is not None:
        attrs.as_path = merge_as4_path(attrs.as_path, as4_path)
    if malformed is not None:
        malformed.attrs = attrs
        raise malformed
    return attrs


def _attribute_rules(asn4: bool, rib_entry: bool) -> dict[int, tuple[int, int, int]]:
    """Per known attribute type: the Optional/Transitive bits it must carry (none checked in
    an MRT RIB entry), its exact length (-1: any) and the unit its length is a non-zero
    multiple of (0: any)."""
    rules = {}
    for code, flags in ATTR_FLAGS.items():
        exact = _ATTR_LENGTH.get(code, -1)
        if code == ATTR_AGGREGATOR:
            exact = 8 if asn4 else 6
        rules[code] = (0 if rib_entry else flags, exact, _ATTR_UNIT.get(code, 0))
    return rules


_RULES = {(a, r): _attribute_rules(a, r) for a in (False, True) for r in (False, True)}


def _attribute_problem(
    flags: int, length: int, expected: int, exact: int, unit: int
) -> tuple[str, int]:
    """What is wrong with an attribute `_RULES` refused, and the NOTIFICATION subcode."""
    if flags & _OPTIONAL_TRANSITIVE != expected:
        why = f"flags 0x{flags:02x} (optional/transitive bits should be 0x{expected:02x})"
        return why, ATTRIBUTE_FLAGS_ERROR
    expect = f"expected {exact}" if exact >= 0 else f"not a non-zero multiple of {unit}"
    return f"of {length} bytes, {expect}", ATTRIBUTE_LENGTH_ERROR


# The NOTIFICATION subcode for a malformed attribute value, RFC 4271 section 6.3.
_SUBCODE = {
    ATTR_AS_PATH: MALFORMED_AS_PATH,
    ATTR_NEXT_HOP: INVALID_NEXT_HOP,
    ATTR_ORIGIN: INVALID_ORIGIN,
}
# Next-hop lengths of unicast MP_REACH_NLRI: IPv4, IPv6 (RFC 4760), IPv6 global plus
# link-local (RFC 2545 section 3); IPv4 routes may have IPv6 next hops (RFC 8950).
_NEXT_HOP_LENGTHS = frozenset({4, 16, 32})


def _decode_mp_reach(
    data: bytes, start: int, stop: int, attrs: PathAttributes, add_path: AddPath, rib_entry: bool
) -> None:
    """MP_REACH_NLRI, RFC 4760 section 3. In a TABLE_DUMP_V2 RIB entry the attribute is cut
    down to next-hop length and next hop (RFC 6396 section 4.3.4); some writers still store
    the full form, which is recognised by its length not matching. An error here hides the
    routes, so it is a session reset (RFC 7606 section 7.11)."""
    if rib_entry and stop - start >= 1 and data[start] == stop - start - 1:
        attrs.mp_next_hop = _next_hop_text(data[start + 1 : stop])
        return
    if stop - start < 5:
        raise WireError(
            "MP_REACH_NLRI shorter than its fixed fields", start, OPTIONAL_ATTRIBUTE_ERROR
        )
    afi, safi, nh_len = _MP_HDR.unpack_from(data, start)
    nh_start = start + 4
    nlri_start = nh_start + nh_len + 1  # one reserved byte after the next hop
    if nlri_start > stop:
        raise WireError(
            f"MP_REACH_NLRI next hop of {nh_len} bytes runs past the end",
            start,
            OPTIONAL_ATTRIBUTE_ERROR,
        )
    version = _AFI_VERSION.get(afi)
    if not version or safi != SAFI_UNICAST:
        # RFC 4760 section 7 leaves a family we cannot read to the receiver: skip it.
        attrs.other_families += ((afi, safi),)
        return
    if nh_len not in _NEXT_HOP_LENGTHS and not rib_entry:
        raise WireError(
            f"MP_REACH_NLRI next hop of {nh_len} bytes for AFI {afi}",
            start + 3,
            OPTIONAL_ATTRIBUTE_ERROR,
        )
    attrs.mp_next_hop = _next_hop_text(data[nh_start : nh_start + nh_len])
    if not rib_entry:
        attrs.mp_reach = _mp_prefixes(data, nlri_start, stop, version, add_path, afi)


def _decode_mp_unreach(
    data: bytes, start: int, stop: int, attrs: PathAttributes, add_path: AddPath
) -> None:
    """MP_UNREACH_NLRI, RFC 4760 section 4."""
    if stop - start < 3:
        raise WireError(
            "MP_UNREACH_NLRI shorter than AFI and SAFI", start, OPTIONAL_ATTRIBUTE_ERROR
        )
    afi, safi = _U16.unpack_from(data, start)[0], data[start + 2]
    version = _AFI_VERSION.get(afi)
    if not version or safi != SAFI_UNICAST:
        attrs.other_families += ((afi, safi),)
        return
    attrs.mp_unreach = _mp_prefixes(data, start + 3, stop, version, add_path, afi)


def _mp_prefixes(
    data: bytes, start: int, stop: int, version: int, add_path: AddPath, afi: int
) -> list[Nlri]:
    try:
        return decode_prefixes(data, start, stop, version, _path_ids(add_path, afi))
    except WireError as exc:
        raise WireError(exc.reason, exc.offset, OPTIONAL_ATTRIBUTE_ERROR) from None


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

    def withdrawals(self, time: float, peer_ip: str, peer_asn: int, source: str) -> list[Update]:
        """Every route the UPDATE names, withdrawn: RFC 7606 "treat-as-withdraw"."""
        a = self.attrs
        nlri = dict.fromkeys(self.withdrawn + a.mp_unreach + self.announced + a.mp_reach)
        return [
            Update(time, peer_ip, peer_asn, prefix, False, source=source, path_id=path_id)
            for prefix, path_id in nlri
        ]

    def missing_mandatory(self) -> list[str]:
        """Well-known mandatory attributes an UPDATE that announces routes lacks: ORIGIN and
        AS_PATH, and NEXT_HOP when the NLRI field is used (RFC 4271 section 5, RFC 4760
        section 3). RFC 7606 section 3 d: treat-as-withdraw."""
        a = self.attrs
        if not self.announced and not a.mp_reach:
            return []
        needed = (ATTR_ORIGIN, ATTR_AS_PATH) + ((ATTR_NEXT_HOP,) if self.announced else ())
        return [ATTR_NAMES[code] for code in needed if not a.has(code)]


def decode_update(
    data: bytes,
    off: int = 0,
    end: int | None = None,
    *,
    asn4: bool,
    add_path: AddPath = False,
    mandatory: bool = False,
) -> UpdateMessage:
    """The body of an UPDATE (after the 19-byte header), RFC 4271 section 4.3, with RFC 7606
    error handling (see `decode_attributes`). `mandatory`: an UPDATE that announces routes
    without ORIGIN, AS_PATH or NEXT_HOP is malformed (a live session; MRT and BMP Loc-RIB
    data carry locally originated routes that may lack them)."""
    if end is None:
        end = len(data)
    if off + 2 > end:
        raise WireError(
            "UPDATE too short for the withdrawn-routes length", off, MALFORMED_ATTRIBUTE_LIST
        )
    (wlen,) = _U16.unpack_from(data, off)
    wstart = off + 2
    wend = wstart + wlen
    if wend + 2 > end:
        raise WireError(
            f"withdrawn routes of {wlen} bytes run past the UPDATE", off, MALFORMED_ATTRIBUTE_LIST
        )
    ipv4_ids = _path_ids(add_path, AFI_IPV4)
    (alen,) = _U16.unpack_from(data, wend)
    astart = wend + 2
    aend = astart + alen
    if aend > end:  # RFC 7606 section 4: the NLRI cannot be found
        raise WireError(
            f"path attributes of {alen} bytes run past the UPDATE", wend, MALFORMED_ATTRIBUTE_LIST
        )
    try:
        withdrawn = decode_prefixes(data, wstart, wend, 4, ipv4_ids)
        malformed = None
        try:
            attrs = decode_attributes(data, astart, aend, asn4=asn4, add_path=add_path)
        except TreatAsWithdraw as exc:
            malformed = exc
            attrs = exc.attrs or PathAttributes()
        announced = decode_prefixes(data, aend, end, 4, ipv4_ids)
    except WireError as exc:
        if exc.subcode:
            raise
        # RFC 7606 section 5.3: a malformed NLRI or withdrawn-routes field.
        raise WireError(exc.reason, exc.offset, INVALID_NETWORK_FIELD) from None
    msg = UpdateMessage(withdrawn, announced, attrs)
    if malformed is None and mandatory:
        missing = msg.missing_mandatory()
        if missing:
            code = next(c for c, n in ATTR_NAMES.items() if n == missing[0])
            malformed = TreatAsWithdraw(
                f"missing {', '.join(missing)}", astart, MISSING_WELL_KNOWN, bytes((code,))
            )
    if malformed is not None:
        malformed.message = msg
        raise malformed
    return msg


def decode_header(
    data: bytes, off: int = 0, max_length: int = MAX_EXTENDED_MESSAGE
) -> tuple[int, int]:
    """The 19-byte header at `off` (RFC 4271 section 4.1): (message type, total length).
    Checks the marker and that the length is between the header size and `max_length`; for
    the rest of section 6.1, see `check_header`."""
    if off + HEADER_LEN > len(data):
        raise WireError("truncated BGP message header", off)
    if data[off : off + 16] != MARKER:
        raise WireError("BGP marker is not all ones", off, CONNECTION_NOT_SYNCHRONIZED)
    (length,) = _U16.unpack_from(data, off + 16)
    if length < HEADER_LEN:
        raise WireError(
            f"BGP message length {length} is below the header size",
            off + 16,
            BAD_MESSAGE_LENGTH,
            data[off + 16 : off + 18],
        )
    if length > max_length:
        raise WireError(
            f"BGP message length {length} is above {max_length}"
            + (" (no extended messages, RFC 8654)" if max_length == MAX_MESSAGE else ""),
            off + 16,
            BAD_MESSAGE_LENGTH,
            data[off + 16 : off + 18],
        )
    return data[off + 18], length


def check_header(mtype: int, length: int, known: frozenset[int]) -> None:
    """The rest of RFC 4271 section 6.1 for a session: a type in `known`, and at least that
    type's minimum length (a KEEPALIVE exactly 19 bytes, an OPEN at most 4,096 even with
    extended messages, RFC 8654 section 4)."""
    raw_length = _U16.pack(length)
    if mtype not in known:
        raise WireError(f"unknown BGP message type {mtype}", 18, BAD_MESSAGE_TYPE, bytes((mtype,)))
    shortest = _MIN_LENGTH.get(mtype, HEADER_LEN)
    if (
        length < shortest
        or (mtype == MSG_KEEPALIVE and length != HEADER_LEN)
        or (mtype == MSG_OPEN and length > MAX_MESSAGE)
    ):
        raise WireError(
            f"{MESSAGE_NAMES.get(mtype, mtype)} of {length} bytes",
            16,
            BAD_MESSAGE_LENGTH,
            raw_length,
        )


MESSAGE_NAMES = {
    MSG_OPEN: "OPEN",
    MSG_UPDATE: "UPDATE",
    MSG_NOTIFICATION: "NOTIFICATION",
    MSG_KEEPALIVE: "KEEPALIVE",
}


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


def end_of_rib(afi: int, safi: int = SAFI_UNICAST) -> bytes:
    """The End-of-RIB marker of a family (RFC 4724 section 2): an empty UPDATE for IPv4
    unicast, else an UPDATE holding only an empty MP_UNREACH_NLRI."""
    if (afi, safi) == (AFI_IPV4, SAFI_UNICAST):
        return encode_message(MSG_UPDATE, bytes(4))
    attr = struct.pack(">BBBHB", FLAG_OPTIONAL, ATTR_MP_UNREACH_NLRI, 3, afi, safi)
    return encode_message(MSG_UPDATE, struct.pack(">HH", 0, len(attr)) + attr)


def end_of_rib_afi(msg: UpdateMessage, data: bytes, off: int, end: int) -> int | None:
    """The AFI whose End-of-RIB the decoded UPDATE `msg` (body `data[off:end]`) is, or
    None if it is not one."""
    a = msg.attrs
    if msg.withdrawn or msg.announced or a.mp_reach or a.mp_unreach:
        return None
    if end - off == 4:
        return AFI_IPV4
    if a.present != 1 << ATTR_MP_UNREACH_NLRI or a.other_families:
        return None
    head = 4 if data[off + 4] & FLAG_EXTENDED_LENGTH else 3
    afi: int = _U16.unpack_from(data, off + 4 + head)[0]
    return afi


# OPEN optional parameter 2 carries capabilities (RFC 5492 section 4).
PARAM_CAPABILITIES = 2
CAP_MULTIPROTOCOL = 1  # RFC 4760 section 8
CAP_EXTENDED_MESSAGE = 6  # RFC 8654 section 3
CAP_GRACEFUL_RESTART = 64  # RFC 4724 section 3
CAP_LONG_LIVED_GR = 71  # RFC 9494 section 3
# Restart Flags, the top bits of the capability's first byte: R (restarted, RFC 4724) and N
# (graceful restart also after a NOTIFICATION, RFC 8538 section 2). The per-family F bit:
# forwarding state kept.
GR_RESTARTED, GR_NOTIFICATION, GR_FORWARDING = 0x80, 0x40, 0x80
CAP_AS4 = 65  # RFC 6793 section 3
CAP_ADD_PATH = 69  # RFC 7911 section 4
ADD_PATH_RECEIVE, ADD_PATH_SEND = 1, 2  # bits of its Send/Receive field
AS_TRANS = 23456  # RFC 6793 section 9: the 2-byte stand-in for a 4-byte ASN


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    """The graceful restart capability (RFC 4724 section 3): how long the speaker's routes
    should be kept while it restarts, and for which families ((AFI, SAFI, flags); none: it
    only helps others restart). `notification`: the N bit of RFC 8538."""

    restart_time: int = 0  # seconds, 12 bits
    restarted: bool = False
    notification: bool = False
    families: tuple[tuple[int, int, int], ...] = ()

    def encode(self) -> bytes:
        flags = (GR_RESTARTED if self.restarted else 0) | (
            GR_NOTIFICATION if self.notification else 0
        )
        head = _U16.pack(flags << 8 | min(self.restart_time, 0xFFF))
        return head + b"".join(struct.pack(">HBB", *f) for f in self.families)

    @classmethod
    def decode(cls, value: bytes) -> GracefulRestart:
        (head,) = _U16.unpack_from(value)
        return cls(
            head & 0xFFF,
            bool(head >> 8 & GR_RESTARTED),
            bool(head >> 8 & GR_NOTIFICATION),
            tuple(struct.iter_unpack(">HBB", value[2:])),
        )


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
    extended_message: bool = False  # RFC 8654: messages up to 65,535 bytes
    graceful_restart: GracefulRestart | None = None  # RFC 4724 / RFC 8538
    # RFC 9494: (AFI, SAFI, flags, long-lived stale time) per family; None: not advertised
    long_lived: tuple[tuple[int, int, int, int], ...] | None = None
    # Optional parameter types other than capabilities (RFC 4271 section 6.2: an error).
    unsupported_parameters: tuple[int, ...] = ()

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
        if self.extended_message:
            caps += struct.pack(">BB", CAP_EXTENDED_MESSAGE, 0)
        if self.graceful_restart is not None:
            value = self.graceful_restart.encode()
            caps += struct.pack(">BB", CAP_GRACEFUL_RESTART, len(value)) + value
        if self.long_lived is not None:
            value = b"".join(
                struct.pack(">HBB", afi, safi, flags) + stale.to_bytes(3, "big")
                for afi, safi, flags, stale in self.long_lived
            )
            caps += struct.pack(">BB", CAP_LONG_LIVED_GR, len(value)) + value
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
        off, width = 10, 1
        if params_len == 255 and len(body) >= 13 and body[10] == 255:
            # RFC 9072 section 2: extended optional parameters, 2-byte lengths.
            (params_len,) = _U16.unpack_from(body, 11)
            off, width = 13, 2
        end = off + params_len
        if end > len(body):
            raise WireError(f"OPEN optional parameters of {params_len} bytes run past it", 9)
        families: set[tuple[int, int]] = set()
        add_path: list[tuple[int, int, int]] = []
        unsupported: list[int] = []
        asn4 = extended = False
        graceful: GracefulRestart | None = None
        long_lived: tuple[tuple[int, int, int, int], ...] | None = None
        while off < end:
            if off + 1 + width > end:
                raise WireError("truncated OPEN optional parameter", off)
            ptype = body[off]
            plen = body[off + 1] if width == 1 else _U16.unpack_from(body, off + 1)[0]
            cap = off + 1 + width
            pend = cap + plen
            if pend > end:
                raise WireError("OPEN optional parameter runs past the message", off)
            if ptype != PARAM_CAPABILITIES:
                unsupported.append(ptype)
            while ptype == PARAM_CAPABILITIES and cap < pend:
                if cap + 2 > pend:
                    raise WireError("truncated capability", cap)
                code, clen = body[cap], body[cap + 1]
                value = body[cap + 2 : cap + 2 + clen]
                if cap + 2 + clen > pend:
                    raise WireError(f"capability {code} runs past its parameter", cap)
                if code == CAP_MULTIPROTOCOL and clen == 4:
                    afi, _, safi = struct.unpack(">HBB", value)
                    families.add((afi, safi))
                elif code == CAP_AS4 and clen == 4:
                    (asn,) = _U32.unpack(value)
                    asn4 = True
                elif code == CAP_ADD_PATH and clen % 4 == 0:
                    add_path.extend(struct.iter_unpack(">HBB", value))
                elif code == CAP_EXTENDED_MESSAGE:
                    extended = True
                elif code == CAP_GRACEFUL_RESTART and clen >= 2 and clen % 4 == 2:
                    graceful = GracefulRestart.decode(value)
                elif code == CAP_LONG_LIVED_GR and clen % 7 == 0:
                    long_lived = tuple(
                        (afi, safi, flags, int.from_bytes(value[i + 4 : i + 7], "big"))
                        for i in range(0, clen, 7)
                        for afi, safi, flags in [struct.unpack_from(">HBB", value, i)]
                    )
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
            extended,
            graceful,
            long_lived,
            tuple(unsupported),
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
        """Never fails: a NOTIFICATION shorter than code and subcode (which the session's
        header check refuses first) decodes as code 0."""
        if len(body) < 2:
            return cls(0, 0, bytes(body))
        return cls(body[0], body[1], bytes(body[2:]))

    def __str__(self) -> str:
        """Code and subcode with their RFC names, and what the data says: a Cease
        shutdown message (RFC 9003) as text, anything else as hex."""
        name, subcodes = NOTIFICATION_NAMES.get(self.code, (f"error code {self.code}", {}))
        text = f"NOTIFICATION {self.code}/{self.subcode} {name}"
        if self.subcode or subcodes:
            text += f", {subcodes.get(self.subcode, f'subcode {self.subcode}')}"
        data = self.data
        if (
            self.code == CEASE
            and self.subcode in (ADMINISTRATIVE_SHUTDOWN, ADMINISTRATIVE_RESET)
            and data
            and data[0] == len(data) - 1
        ):
            message = data[1:].decode("utf-8", "replace")
            return f'{text}: "{message}"' if message else text
        return f"{text} (data {data.hex()})" if data else text
