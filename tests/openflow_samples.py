"""Well-formed OpenFlow 1.3 messages a switch may send, built field by field from the spec,
with the position of every length field in them, so tests can break each one.

    wire = multipart(GROUP_DESC, group_desc(1, [bucket([output(2)])]))
    wire.data                   # the message
    wire.broken(i, 0)           # the same message with length field i set to 0

Every variable-length structure of OpenFlow 1.3.5 section 7 that a switch sends is here:
multipart entries of all fourteen types, match and OXM, instructions, actions (and the
Nicira ct action's nested ones), group buckets, meter bands, table-feature properties and
ids, queue properties, hello elements, experimenter properties.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 0x04


@dataclass(frozen=True)
class Length:
    offset: int
    fmt: str  # "!H" or "!B"
    what: str


@dataclass(frozen=True)
class Wire:
    data: bytes
    lengths: tuple[Length, ...] = ()

    def __add__(self, other: Wire) -> Wire:
        shift = len(self.data)
        moved = tuple(Length(x.offset + shift, x.fmt, x.what) for x in other.lengths)
        return Wire(self.data + other.data, self.lengths + moved)

    def broken(self, index: int, value: int) -> bytes:
        field = self.lengths[index]
        out = bytearray(self.data)
        struct.pack_into(field.fmt, out, field.offset, value)
        return bytes(out)

    def value(self, index: int) -> int:
        field = self.lengths[index]
        (number,) = struct.unpack_from(field.fmt, self.data, field.offset)
        return int(number)


def join(parts: list[Wire]) -> Wire:
    out = Wire(b"")
    for part in parts:
        out = out + part
    return out


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def _sized(what: str, fmt: str, *values: object, at: int = 0, tail: Wire | None = None) -> Wire:
    """A struct whose length field (a u16 at `at`) covers itself and `tail`."""
    body = struct.pack(fmt, 0, *values) if at == 0 else struct.pack(fmt, *values)
    tail = tail or Wire(b"")
    total = len(body) + len(tail.data)
    data = bytearray(body)
    struct.pack_into("!H", data, at, total)
    return Wire(bytes(data), (Length(at, "!H", what),)) + tail


def message(type_: int, body: Wire, xid: int = 7) -> Wire:
    head = struct.pack("!BBHI", VERSION, type_, 8 + len(body.data), xid)
    return Wire(head, (Length(2, "!H", "header"),)) + body


# -- match, actions, instructions ------------------------------------------------------


def oxm(field: int, payload: bytes, hasmask: bool = False) -> Wire:
    header = 0x8000 << 16 | field << 9 | int(hasmask) << 8 | len(payload)
    return Wire(struct.pack("!I", header) + payload, (Length(3, "!B", f"OXM {field}"),))


def match(*fields: Wire) -> Wire:
    oxms = join(list(fields))
    head = Wire(struct.pack("!HH", 1, 4 + len(oxms.data)), (Length(2, "!H", "match"),))
    whole = head + oxms
    return Wire(_pad8(whole.data), whole.lengths)


def output(port: int) -> Wire:
    return Wire(struct.pack("!HHIH6x", 0, 16, port, 0xFFE5), (Length(2, "!H", "output"),))


def group_action(group_id: int) -> Wire:
    return Wire(struct.pack("!HHI", 22, 8, group_id), (Length(2, "!H", "group action"),))


def set_field(field: Wire) -> Wire:
    data = _pad8(struct.pack("!HH", 25, 4 + len(field.data)) + field.data)
    out = bytearray(data)
    struct.pack_into("!H", out, 2, len(data))
    lengths = (Length(2, "!H", "set_field"), Length(4 + 3, "!B", "set_field OXM"))
    return Wire(bytes(out), lengths)


def nx_ct(*actions: Wire) -> Wire:
    nested = join(list(actions))
    # Nicira ct (subtype 35): flags, zone_src, zone, recirc_table, pad, alg, then actions.
    head = struct.pack("!HHIHH4sHB3xH", 0xFFFF, 0, 0x2320, 35, 1, b"\0" * 4, 0, 0xFF, 0)
    return _sized_at(head, 2, "nx ct", nested)


def _sized_at(head: bytes, at: int, what: str, tail: Wire) -> Wire:
    data = bytearray(head)
    struct.pack_into("!H", data, at, len(head) + len(tail.data))
    return Wire(bytes(data), (Length(at, "!H", what),)) + tail


def apply_actions(*actions: Wire) -> Wire:
    return _sized_at(struct.pack("!HH4x", 4, 0), 2, "apply_actions", join(list(actions)))


def goto(table: int) -> Wire:
    return Wire(struct.pack("!HHB3x", 1, 8, table), (Length(2, "!H", "goto_table"),))


def write_metadata(value: int, mask: int) -> Wire:
    data = struct.pack("!HH4xQQ", 2, 24, value, mask)
    return Wire(data, (Length(2, "!H", "write_metadata"),))


# -- messages ----------------------------------------------------------------------------

DESC, FLOW, AGGREGATE, TABLE, PORT_STATS, QUEUE, GROUP, GROUP_DESC = range(8)
GROUP_FEATURES, METER, METER_CONFIG, METER_FEATURES, TABLE_FEATURES, PORT_DESC = range(8, 14)
MP_EXPERIMENTER = 0xFFFF


def multipart(mp_type: int, *entries: Wire, flags: int = 0) -> Wire:
    return message(19, Wire(struct.pack("!HH4x", mp_type, flags)) + join(list(entries)))


def flow_stats(m: Wire, *instructions: Wire, cookie: int = 0x4F43 << 48) -> Wire:
    fmt = "!HBxIIHHHH4xQQQ"
    return _sized(
        "flow stats", fmt, 0, 1, 2, 100, 0, 0, 0, cookie, 5, 500, tail=m + join(list(instructions))
    )


def bucket(*actions: Wire) -> Wire:
    return _sized("bucket", "!HHII4x", 0, 0xFFFFFFFF, 0xFFFFFFFF, tail=join(list(actions)))


def group_desc(group_id: int, *buckets: Wire) -> Wire:
    return _sized("group desc", "!HBxI", 0, group_id, tail=join(list(buckets)))


def group_stats(group_id: int, buckets: int) -> Wire:
    counters = Wire(struct.pack("!QQ", 1, 2) * buckets)
    return _sized("group stats", "!H2xII4xQQII", group_id, 1, 10, 1000, 3, 4, tail=counters)


def meter_stats(meter_id: int, bands: int) -> Wire:
    body = struct.pack("!IH6xIQQII", meter_id, 40 + 16 * bands, 1, 2, 3, 4, 5)
    counters = struct.pack("!QQ", 1, 2) * bands
    return Wire(body + counters, (Length(4, "!H", "meter stats"),))


def meter_config(meter_id: int, *bands: Wire) -> Wire:
    return _sized("meter config", "!HHI", 1, meter_id, tail=join(list(bands)))


def drop_band(rate: int) -> Wire:
    return Wire(struct.pack("!HHII4x", 1, 16, rate, 0), (Length(2, "!H", "meter band"),))


def _prop(kind: int, items: Wire, what: str) -> Wire:
    inner = _sized_at(struct.pack("!HH", kind, 0), 2, what, items)
    return Wire(_pad8(inner.data), inner.lengths)


def _ids(*types: int) -> Wire:
    return join([Wire(struct.pack("!HH", t, 4), (Length(2, "!H", "id"),)) for t in types])


def table_features(table_id: int) -> Wire:
    props = join(
        [
            _prop(0, _ids(1, 2, 4), "instructions property"),
            _prop(2, Wire(bytes([table_id + 1])), "next tables property"),
            _prop(6, _ids(0, 22), "apply actions property"),
            _prop(8, Wire(struct.pack("!II", 0x80000004, 0x80000606)), "match property"),
            _prop(0xFFFE, Wire(struct.pack("!III", 0x2320, 1, 9)), "experimenter property"),
        ]
    )
    name = b"classify".ljust(32, b"\0")
    fmt = "!HB5x32sQQII"
    return _sized("table features", fmt, table_id, name, 2**64 - 1, 2**64 - 1, 3, 1000, tail=props)


def port(number: int, name: str) -> Wire:
    fmt = "!I4x6s2x16sIIIIIIII"
    mac = bytes([2, 0, 0, 0, 0, number & 0xFF])
    return Wire(
        struct.pack(fmt, number, mac, name.encode().ljust(16, b"\0"), 0, 4, 0, 0, 0, 0, 0, 0)
    )


def hello(*versions: int) -> Wire:
    bitmap = sum(1 << v for v in versions)
    elem = Wire(struct.pack("!HHI", 1, 8, bitmap), (Length(2, "!H", "hello element"),))
    return message(0, elem)


def packet_in(m: Wire, frame: bytes) -> Wire:
    head = Wire(struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 0, 0, 0x4F43 << 48))
    return message(10, head + m + Wire(b"\0\0" + frame))


def flow_removed(m: Wire) -> Wire:
    return message(11, Wire(struct.pack("!QHBBIIHHQQ", 1, 100, 0, 1, 2, 3, 0, 0, 4, 5)) + m)


def queue_config_reply() -> Wire:
    prop = Wire(struct.pack("!HH4xH6x", 1, 16, 500), (Length(2, "!H", "queue property"),))
    queue = _sized_at(struct.pack("!IIH6x", 1, 2, 0), 8, "queue", prop)
    return message(23, Wire(struct.pack("!I4x", 2)) + queue)


def packet_in2(frame: bytes) -> Wire:
    packet = _sized_at(struct.pack("!HH", 0, 0), 2, "packet_in2 property", Wire(frame))
    return message(
        4, Wire(struct.pack("!II", 0x2320, 30)) + Wire(_pad8(packet.data), packet.lengths)
    )


def features_reply(dpid: int, xid: int = 7) -> Wire:
    return message(6, Wire(struct.pack("!QIBB2xII", dpid, 256, 254, 0, 0x4F, 0)), xid)


# -- the catalogue ---------------------------------------------------------------------------

ETH_DST = oxm(3, bytes.fromhex("020000000102"))
METADATA = oxm(2, struct.pack("!QQ", 100, 0xFFFFFF), hasmask=True)
ARP = bytes.fromhex(
    "ffffffffffff020000000101080600010800060400010200000001010a000001000000000000" + "0a000002"
)


def samples() -> dict[str, Wire]:
    """One well-formed message of every kind a switch sends that has a length inside."""
    return {
        "hello": hello(1, 4),
        "packet_in": packet_in(match(oxm(0, struct.pack("!I", 1)), METADATA), ARP),
        "flow_removed": flow_removed(match(ETH_DST)),
        "queue_config": queue_config_reply(),
        "nx_packet_in2": packet_in2(ARP),
        "mp_desc": multipart(DESC, Wire(bytes(1056))),
        "mp_flow": multipart(
            FLOW,
            flow_stats(match(METADATA, ETH_DST), apply_actions(output(3), group_action(9))),
            flow_stats(match(), write_metadata(100, 0xFFFFFF), goto(1)),
            flow_stats(match(), apply_actions(set_field(ETH_DST), nx_ct(output(2)))),
        ),
        "mp_aggregate": multipart(AGGREGATE, Wire(struct.pack("!QQI4x", 1, 2, 3))),
        "mp_table": multipart(TABLE, Wire(struct.pack("!B3xIQQ", 0, 5, 6, 7) * 3)),
        "mp_port_stats": multipart(PORT_STATS, Wire(bytes(112) * 2)),
        "mp_queue": multipart(QUEUE, Wire(bytes(40) * 2)),
        "mp_group": multipart(GROUP, group_stats(1, 2), group_stats(2, 0)),
        "mp_group_desc": multipart(
            GROUP_DESC,
            group_desc(200, bucket(output(1)), bucket(output(2), output(3))),
            group_desc(201),
        ),
        "mp_group_features": multipart(GROUP_FEATURES, Wire(bytes(40))),
        "mp_meter": multipart(METER, meter_stats(1, 2)),
        "mp_meter_config": multipart(METER_CONFIG, meter_config(1, drop_band(1000))),
        "mp_meter_features": multipart(METER_FEATURES, Wire(bytes(16))),
        "mp_table_features": multipart(TABLE_FEATURES, table_features(0), table_features(1)),
        "mp_port_desc": multipart(PORT_DESC, port(1, "h1"), port(2, "vx100-1")),
        "mp_experimenter": multipart(MP_EXPERIMENTER, Wire(struct.pack("!II", 0x2320, 1) + b"x")),
    }


def bad_variants() -> list[tuple[str, bytes]]:
    """Each length field of each sample set to 0, and to more than is there."""
    out = []
    for name, wire in samples().items():
        for i, field in enumerate(wire.lengths):
            if field.what == "header":
                continue  # framing: os-ken reads by it; a wrong one is another message
            top = 0xFF if field.fmt == "!B" else 0xFFF8
            out.append((f"{name}: {field.what} #{i} = 0", wire.broken(i, 0)))
            out.append((f"{name}: {field.what} #{i} overlong", wire.broken(i, top)))
    # Fixed-size arrays and bodies have no length field: one byte too many.
    for name in ("mp_desc", "mp_port_desc", "mp_table", "mp_aggregate"):
        data = samples()[name].data + b"\0" * 8
        out.append((f"{name}: body overlong", data[:2] + struct.pack("!H", len(data)) + data[4:]))
    return out


def zero_length_flow_stats() -> bytes:
    """The 72-byte message from issue #17: a FLOW stats entry whose length is 0."""
    return multipart(FLOW, flow_stats(match())).broken(1, 0)


def zero_length_group_desc() -> bytes:
    """A GROUP_DESC reply whose one entry has length 0 (issue #17)."""
    return multipart(GROUP_DESC, group_desc(1)).broken(1, 0)
