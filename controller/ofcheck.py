"""Length checks for every OpenFlow message a switch may send, before os-ken parses it.

os-ken 4.2.2 trusts the length fields inside a message: a multipart entry, group bucket,
action, table-feature id or queue property whose length is 0 makes its parser loop forever
(`offset += entry.length` never advances), allocating memory at every turn. One 72-byte
MULTIPART_REPLY stopped the whole controller. `check()` walks every length field of the
messages an OpenFlow 1.3 switch sends (OpenFlow 1.3.5, sections 7.1-7.5; field sizes from
section 7.2.3.7) and raises `Malformed` naming the first one that is zero, short, overlong
or misaligned, so os-ken only ever parses messages whose every loop ends.

The walk follows the spec and, where os-ken steps differently (it skips a hello element by
its length, not its padded length), os-ken's stepping too: a message passes only if both
readings agree. Pure: bytes in, an exception or None out.
"""

from __future__ import annotations

import struct

OFP_VERSION_1_3 = 0x04
HEADER = 8

MESSAGE_NAMES = {
    0: "HELLO",
    1: "ERROR",
    2: "ECHO_REQUEST",
    3: "ECHO_REPLY",
    4: "EXPERIMENTER",
    6: "FEATURES_REPLY",
    8: "GET_CONFIG_REPLY",
    10: "PACKET_IN",
    11: "FLOW_REMOVED",
    12: "PORT_STATUS",
    19: "MULTIPART_REPLY",
    21: "BARRIER_REPLY",
    23: "QUEUE_GET_CONFIG_REPLY",
    25: "ROLE_REPLY",
    27: "GET_ASYNC_REPLY",
}
MULTIPART_NAMES = {
    0: "DESC",
    1: "FLOW",
    2: "AGGREGATE",
    3: "TABLE",
    4: "PORT_STATS",
    5: "QUEUE",
    6: "GROUP",
    7: "GROUP_DESC",
    8: "GROUP_FEATURES",
    9: "METER",
    10: "METER_CONFIG",
    11: "METER_FEATURES",
    12: "TABLE_FEATURES",
    13: "PORT_DESC",
    0xFFFF: "EXPERIMENTER",
}

# Messages of a fixed size (section 7.3, 7.4): the whole message, header included.
_FIXED_MESSAGES = {6: 32, 8: 12, 12: 80, 21: 8, 25: 24, 27: 32}
# Multipart bodies that are one struct, and arrays of one fixed-size struct (section 7.3.5).
_SINGLE_BODIES = {0: 1056, 2: 24, 8: 40, 11: 16}
_ARRAY_BODIES = {3: 24, 4: 112, 5: 40, 13: 64}

# Actions (section 7.2.5): the fixed length of each standard type; SET_FIELD and
# EXPERIMENTER are variable (checked below).
_ACTION_LENGTHS = {
    0: 16,  # OUTPUT
    11: 8,  # COPY_TTL_OUT
    12: 8,  # COPY_TTL_IN
    15: 8,  # SET_MPLS_TTL
    16: 8,  # DEC_MPLS_TTL
    17: 8,  # PUSH_VLAN
    18: 8,  # POP_VLAN
    19: 8,  # PUSH_MPLS
    20: 8,  # POP_MPLS
    21: 8,  # SET_QUEUE
    22: 8,  # GROUP
    23: 8,  # SET_NW_TTL
    24: 8,  # DEC_NW_TTL
    26: 8,  # PUSH_PBB
    27: 8,  # POP_PBB
}
ACTION_SET_FIELD = 25
EXPERIMENTER = 0xFFFF
NX_EXPERIMENTER_ID = 0x00002320
NXAST_CT = 35  # Nicira conntrack: carries nested actions
NX_CT_HEADER = 24

# Instructions (section 7.2.4): GOTO_TABLE, WRITE_METADATA, METER are fixed; the three
# action instructions are 8 bytes plus their actions.
_INSTRUCTION_LENGTHS = {1: 8, 2: 24, 6: 8}
_ACTION_INSTRUCTIONS = {3, 4, 5}  # WRITE_ACTIONS, APPLY_ACTIONS, CLEAR_ACTIONS

# OXM_OF_* payload sizes (section 7.2.3.7), doubled when the has-mask bit is set.
_OXM_BASIC = 0x8000
_OXM_EXPERIMENTER = 0xFFFF
_OXM_SIZES = {
    0: 4, 1: 4, 2: 8, 3: 6, 4: 6, 5: 2, 6: 2, 7: 1, 8: 1, 9: 1, 10: 1, 11: 4, 12: 4,
    13: 2, 14: 2, 15: 2, 16: 2, 17: 2, 18: 2, 19: 1, 20: 1, 21: 2, 22: 4, 23: 4, 24: 6,
    25: 6, 26: 16, 27: 16, 28: 4, 29: 1, 30: 1, 31: 16, 32: 6, 33: 6, 34: 4, 35: 1,
    36: 1, 37: 3, 38: 8, 39: 2,
}  # fmt: skip

_METER_BANDS = {1, 2, EXPERIMENTER}  # DROP, DSCP_REMARK, EXPERIMENTER: 16 bytes or more
_QUEUE_PROPS = {1: 16, 2: 16}  # MIN_RATE, MAX_RATE; EXPERIMENTER is 16 or more
_TABLE_FEATURE_PROPS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 0xFFFE, 0xFFFF}


class Malformed(ValueError):
    """A message whose lengths do not add up; the text says which field and where."""


def message_name(buf: bytes) -> str:
    """A short, bounded name for a message (a metric label): its type, or "short"."""
    if len(buf) < HEADER:
        return "short"
    version, type_ = buf[0], buf[1]
    if version != OFP_VERSION_1_3 and type_ > 1:
        return "other_version"
    name = MESSAGE_NAMES.get(type_, "unexpected_type")
    if type_ == 19 and len(buf) >= 10:
        mp_type = struct.unpack_from("!H", buf, HEADER)[0]
        name += "_" + MULTIPART_NAMES.get(mp_type, "unknown")
    return name


def check(buf: bytes) -> None:
    """Raise Malformed unless every length in the message `buf` is consistent."""
    if len(buf) < HEADER:
        raise Malformed(f"{len(buf)} bytes is shorter than the 8-byte OpenFlow header")
    version, type_, length = struct.unpack_from("!BBH", buf)
    if length != len(buf):
        raise Malformed(f"header length {length} but the message has {len(buf)} bytes")
    if version != OFP_VERSION_1_3:
        # Before version negotiation only HELLO and ERROR cross versions (section 6.3.1).
        if not 1 <= version <= 6 or type_ > 1:
            raise Malformed(f"OpenFlow version {version:#x} message type {type_} (we speak 1.3)")
        if type_ == 0 and version >= OFP_VERSION_1_3:
            _hello(buf)
        elif type_ == 1:
            _need(buf, 12, "ERROR")
        return
    name = MESSAGE_NAMES.get(type_)
    if name is None:
        raise Malformed(f"message type {type_} is not one a switch sends to a controller")
    if type_ in _FIXED_MESSAGES:
        want = _FIXED_MESSAGES[type_]
        if length != want:
            raise Malformed(f"{name} is {length} bytes; it is always {want}")
        return
    if type_ == 0:
        _hello(buf)
    elif type_ == 1:
        error_type = struct.unpack_from("!H", buf, HEADER)[0] if length >= 10 else 0
        _need(buf, 16 if error_type == EXPERIMENTER else 12, name)
    elif type_ == 4:
        _experimenter_message(buf)
    elif type_ == 10:
        _packet_in(buf)
    elif type_ == 11:
        _flow_removed(buf)
    elif type_ == 19:
        _multipart_reply(buf)
    elif type_ == 23:
        _queue_config(buf)
    # ECHO_REQUEST and ECHO_REPLY carry arbitrary data.


# -- pieces --------------------------------------------------------------------------------


def _need(buf: bytes, size: int, what: str) -> None:
    if len(buf) < size:
        raise Malformed(f"{what} is {len(buf)} bytes, shorter than its {size}-byte minimum")


def _header(buf: bytes, at: int, end: int, fmt: str, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if at + size > end:
        raise Malformed(f"{what} at byte {at}: {end - at} bytes left, its header needs {size}")
    return struct.unpack_from(fmt, buf, at)


def _extent(length: int, at: int, end: int, minimum: int, what: str, align: int = 1) -> int:
    """Where a structure of `length` bytes starting at `at` ends; raise if it cannot be."""
    if length < minimum:
        raise Malformed(f"{what} at byte {at}: length {length}, less than its minimum {minimum}")
    if length % align:
        raise Malformed(f"{what} at byte {at}: length {length} is not a multiple of {align}")
    if at + length > end:
        raise Malformed(
            f"{what} at byte {at}: length {length} runs {at + length - end} bytes past its end"
        )
    return at + length


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def _hello(buf: bytes) -> None:
    # Section 7.5.1: elements fill the rest of the message. os-ken skips an element by its
    # length, not its padded length, so that length must be a multiple of 8 too.
    at, end = HEADER, len(buf)
    while at < end:
        (_, length) = _header(buf, at, end, "!HH", "HELLO element")
        at = _extent(length, at, end, 8, "HELLO element", align=8)


def _match(buf: bytes, at: int, end: int, what: str) -> int:
    """Check an ofp_match (section 7.2.3) at `at`; return where the padded match ends."""
    (type_, length) = _header(buf, at, end, "!HH", f"{what} match")
    if type_ != 1:
        raise Malformed(f"{what} match at byte {at}: type {type_}; OpenFlow 1.3 uses OXM (1)")
    if length < 4:
        raise Malformed(f"{what} match at byte {at}: length {length}, less than its minimum 4")
    padded = at + _pad8(length)
    if padded > end:
        raise Malformed(f"{what} match at byte {at}: length {length} runs past its end")
    _oxms(buf, at + 4, at + length, f"{what} match")
    return padded


def _oxms(buf: bytes, at: int, end: int, what: str) -> None:
    while at < end:
        (header,) = _header(buf, at, end, "!I", f"{what} OXM")
        _oxm(buf, at, end, header, what)
        at += 4 + (header & 0xFF)


def _oxm(buf: bytes, at: int, end: int, header: int, what: str) -> None:
    oxm_class, field, hasmask, size = (
        header >> 16,
        (header >> 9) & 0x7F,
        header >> 8 & 1,
        header & 0xFF,
    )
    if at + 4 + size > end:
        raise Malformed(f"{what} OXM at byte {at}: payload of {size} bytes runs past its end")
    if oxm_class == _OXM_BASIC and field in _OXM_SIZES:
        want = _OXM_SIZES[field] * (2 if hasmask else 1)
        if size != want:
            raise Malformed(f"{what} OXM field {field} at byte {at}: {size} bytes, not {want}")
    elif oxm_class == _OXM_EXPERIMENTER and size < 4:
        raise Malformed(f"{what} experimenter OXM at byte {at}: {size} bytes, needs 4 or more")


def _actions(buf: bytes, at: int, end: int, what: str) -> None:
    """A list of actions that exactly fills [at, end) (section 7.2.5)."""
    while at < end:
        (type_, length) = _header(buf, at, end, "!HH", f"{what} action")
        here = f"{what} action type {type_}"
        stop = _extent(length, at, end, 8, here, align=8)
        if type_ in _ACTION_LENGTHS:
            if length != _ACTION_LENGTHS[type_]:
                raise Malformed(
                    f"{here} at byte {at}: length {length}, not {_ACTION_LENGTHS[type_]}"
                )
        elif type_ == ACTION_SET_FIELD:
            (header,) = _header(buf, at + 4, stop, "!I", f"{here} OXM")
            _oxm(buf, at + 4, stop, header, here)
            if _pad8(4 + 4 + (header & 0xFF)) != length:
                raise Malformed(f"{here} at byte {at}: length {length} does not fit its field")
        elif type_ == EXPERIMENTER:
            _experimenter_action(buf, at, stop, here)
        else:
            raise Malformed(f"{here} at byte {at}: not an OpenFlow 1.3 action")
        at = stop


def _experimenter_action(buf: bytes, at: int, end: int, what: str) -> None:
    (experimenter,) = _header(buf, at + 4, end, "!I", what)
    if experimenter != NX_EXPERIMENTER_ID:
        return
    (subtype,) = _header(buf, at + 8, end, "!H", f"{what} (Nicira)")
    if subtype == NXAST_CT:  # os-ken walks its nested actions by their lengths
        if at + NX_CT_HEADER > end:
            raise Malformed(f"{what} (Nicira ct) at byte {at}: shorter than {NX_CT_HEADER}")
        _actions(buf, at + NX_CT_HEADER, end, f"{what} (Nicira ct)")


def _instructions(buf: bytes, at: int, end: int, what: str) -> None:
    while at < end:
        (type_, length) = _header(buf, at, end, "!HH", f"{what} instruction")
        here = f"{what} instruction type {type_}"
        stop = _extent(length, at, end, 8, here, align=8)
        if type_ in _INSTRUCTION_LENGTHS:
            if length != _INSTRUCTION_LENGTHS[type_]:
                want = _INSTRUCTION_LENGTHS[type_]
                raise Malformed(f"{here} at byte {at}: length {length}, not {want}")
        elif type_ in _ACTION_INSTRUCTIONS:
            _actions(buf, at + 8, stop, here)
        else:
            raise Malformed(f"{here} at byte {at}: not an OpenFlow 1.3 instruction")
        at = stop


def _packet_in(buf: bytes) -> None:
    end = _match(buf, 24, len(buf), "PACKET_IN")  # section 7.4.1: 24 bytes, match, 2 pad
    if end + 2 > len(buf):
        raise Malformed("PACKET_IN ends before the 2 pad bytes after its match")


def _flow_removed(buf: bytes) -> None:
    end = _match(buf, 48, len(buf), "FLOW_REMOVED")  # section 7.4.2
    if end != len(buf):
        raise Malformed(f"FLOW_REMOVED has {len(buf) - end} bytes after its match")


def _experimenter_message(buf: bytes) -> None:
    _need(buf, 16, "EXPERIMENTER")
    # os-ken decodes Nicira PACKET_IN2 and ONF bundle control messages' properties.
    experimenter, exp_type = struct.unpack_from("!II", buf, HEADER)
    if experimenter == NX_EXPERIMENTER_ID and exp_type == 30:
        _properties(buf, 16, len(buf), "Nicira PACKET_IN2")
    elif experimenter == 0x4F4E4600 and exp_type == 2300:
        _need(buf, 24, "ONF bundle control")
        _properties(buf, 24, len(buf), "ONF bundle control")


def _properties(buf: bytes, at: int, end: int, what: str) -> None:
    """TLV properties, each padded to 8 bytes (as in section 7.3.5.5.2)."""
    while at < end:
        (_, length) = _header(buf, at, end, "!HH", f"{what} property")
        _extent(length, at, end, 4, f"{what} property")
        if at + _pad8(length) > end:
            raise Malformed(f"{what} property at byte {at}: its padding runs past the end")
        at += _pad8(length)


def _queue_config(buf: bytes) -> None:
    # Section 7.3.6: 16 bytes, then queues of 16 + properties.
    _need(buf, 16, "QUEUE_GET_CONFIG_REPLY")
    at, end = 16, len(buf)
    while at < end:
        (_, _, length) = _header(buf, at, end, "!IIH", "queue")
        stop = _extent(length, at, end, 16, "queue", align=8)
        prop = at + 16
        while prop < stop:
            (kind, size) = _header(buf, prop, stop, "!HH", "queue property")
            here = f"queue property {kind}"
            if kind in _QUEUE_PROPS:
                if size != _QUEUE_PROPS[kind]:
                    raise Malformed(f"{here} at byte {prop}: length {size}, not 16")
            elif kind != EXPERIMENTER:
                raise Malformed(f"{here} at byte {prop}: not an OpenFlow 1.3 queue property")
            prop = _extent(size, prop, stop, 16, here, align=8)
        at = stop


# -- multipart replies (section 7.3.5) ------------------------------------------------------


def _multipart_reply(buf: bytes) -> None:
    _need(buf, 16, "MULTIPART_REPLY")
    (mp_type,) = struct.unpack_from("!H", buf, HEADER)
    name = MULTIPART_NAMES.get(mp_type)
    if name is None:
        raise Malformed(f"MULTIPART_REPLY of unknown type {mp_type}")
    what, at, end = f"MULTIPART_REPLY {name}", 16, len(buf)
    body = end - at
    if mp_type in _SINGLE_BODIES:
        if body != _SINGLE_BODIES[mp_type]:
            raise Malformed(f"{what} body is {body} bytes; it is always {_SINGLE_BODIES[mp_type]}")
    elif mp_type in _ARRAY_BODIES:
        size = _ARRAY_BODIES[mp_type]
        if body % size:
            raise Malformed(f"{what} body is {body} bytes, not a multiple of its {size}-byte entry")
    elif mp_type == EXPERIMENTER:
        if body < 8:
            raise Malformed(f"{what} body is {body} bytes, shorter than its 8-byte header")
    else:
        entry = _ENTRIES[mp_type]
        number = 0
        while at < end:
            number += 1
            at = entry(buf, at, end, f"{what} entry {number}")


def _flow_stats(buf: bytes, at: int, end: int, what: str) -> int:
    (length,) = _header(buf, at, end, "!H", what)
    stop = _extent(length, at, end, 56, what, align=8)
    inst = _match(buf, at + 48, stop, what)
    _instructions(buf, inst, stop, what)
    return stop


def _group_stats(buf: bytes, at: int, end: int, what: str) -> int:
    (length,) = _header(buf, at, end, "!H", what)
    stop = _extent(length, at, end, 40, what)
    if (length - 40) % 16:
        raise Malformed(f"{what} at byte {at}: length {length} is not 40 + 16 per bucket")
    return stop


def _group_desc(buf: bytes, at: int, end: int, what: str) -> int:
    (length,) = _header(buf, at, end, "!H", what)
    stop = _extent(length, at, end, 8, what, align=8)
    bucket, number = at + 8, 0
    while bucket < stop:
        number += 1
        here = f"{what} bucket {number}"
        (size,) = _header(buf, bucket, stop, "!H", here)
        after = _extent(size, bucket, stop, 16, here, align=8)
        _actions(buf, bucket + 16, after, here)
        bucket = after
    return stop


def _meter_stats(buf: bytes, at: int, end: int, what: str) -> int:
    (_, length) = _header(buf, at, end, "!IH", what)
    stop = _extent(length, at, end, 40, what)
    if (length - 40) % 16:
        raise Malformed(f"{what} at byte {at}: length {length} is not 40 + 16 per band")
    return stop


def _meter_config(buf: bytes, at: int, end: int, what: str) -> int:
    (length,) = _header(buf, at, end, "!H", what)
    stop = _extent(length, at, end, 8, what, align=8)
    band = at + 8
    while band < stop:
        (kind, size) = _header(buf, band, stop, "!HH", f"{what} band")
        if kind not in _METER_BANDS:
            raise Malformed(f"{what} band at byte {band}: type {kind} is not an OpenFlow 1.3 band")
        if kind != EXPERIMENTER and size != 16:
            raise Malformed(f"{what} band type {kind} at byte {band}: length {size}, not 16")
        band = _extent(size, band, stop, 16, f"{what} band", align=8)
    return stop


def _table_features(buf: bytes, at: int, end: int, what: str) -> int:
    (length,) = _header(buf, at, end, "!H", what)
    stop = _extent(length, at, end, 64, what, align=8)
    prop = at + 64
    while prop < stop:
        (kind, size) = _header(buf, prop, stop, "!HH", f"{what} property")
        here = f"{what} property type {kind}"
        if kind not in _TABLE_FEATURE_PROPS:
            raise Malformed(f"{here} at byte {prop}: not an OpenFlow 1.3 table feature")
        inner = _extent(size, prop, stop, 4, here)
        if prop + _pad8(size) > stop:
            raise Malformed(f"{here} at byte {prop}: its padding runs past the entry")
        if kind in (0, 1, 4, 5, 6, 7):  # instruction or action ids: type, len (>= 4)
            _ids(buf, prop + 4, inner, here)
        elif kind in (8, 10, 12, 13, 14, 15):  # OXM headers, 4 bytes (8 if experimenter)
            _oxm_ids(buf, prop + 4, inner, here)
        elif kind in (0xFFFE, 0xFFFF) and (size < 12 or size % 4):
            raise Malformed(f"{here} at byte {prop}: length {size}; it is 12 + 4 per data word")
        prop += _pad8(size)
    return stop


def _ids(buf: bytes, at: int, end: int, what: str) -> None:
    while at < end:
        (kind, size) = _header(buf, at, end, "!HH", f"{what} id")
        at = _extent(size, at, end, 8 if kind == EXPERIMENTER else 4, f"{what} id")


def _oxm_ids(buf: bytes, at: int, end: int, what: str) -> None:
    while at < end:
        (header,) = _header(buf, at, end, "!I", f"{what} OXM id")
        size = 8 if header >> 16 == _OXM_EXPERIMENTER else 4
        at = _extent(size, at, end, size, f"{what} OXM id")


_ENTRIES = {
    1: _flow_stats,
    6: _group_stats,
    7: _group_desc,
    9: _meter_stats,
    10: _meter_config,
    12: _table_features,
}
