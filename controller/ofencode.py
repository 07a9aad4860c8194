"""The pipeline's messages packed straight into OpenFlow 1.3 wire bytes (OpenFlow 1.3.5
section 7), with no os-ken objects in between.

A learned MAC becomes about eight flow-mods across its segment's switches; building and
serializing os-ken's OFPFlowMod/OFPMatch objects for them cost most of the controller's
time per packet-in (see README, "Packet-in throughput"). This module packs exactly the
shapes `controller.pipeline` emits with `struct`. os-ken stays the reference: the tests
encode every message of real plans both ways and compare the bytes
(tests/unit/controller/test_ofencode.py), and `controller.ofwire` still reads what
switches report.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable

from controller.openflow import (
    Action,
    AddFlow,
    AddGroup,
    Barrier,
    ClearFlows,
    ClearGroups,
    DeleteFlow,
    DeleteGroup,
    FieldValue,
    Flow,
    Group,
    Match,
    Message,
    ModifyGroup,
    Move,
    Output,
    SetField,
    ToController,
    ToGroup,
    ToInPort,
)
from controller.pipeline import TABLE_ID

OFP_VERSION = 4
# Message types (section 7.1).
OFPT_FLOW_MOD, OFPT_GROUP_MOD, OFPT_BARRIER_REQUEST = 14, 15, 20
# Flow-mod commands and flags (section 7.3.4.1), group-mod commands and types (7.3.4.2).
OFPFC_ADD, OFPFC_DELETE, OFPFC_DELETE_STRICT = 0, 3, 4
OFPFF_SEND_FLOW_REM = 1
OFPGC_ADD, OFPGC_MODIFY, OFPGC_DELETE = 0, 1, 2
OFPGT_ALL, OFPGT_FF = 0, 3
# Reserved numbers (sections 7.2.1, 7.3.4.1, 7.3.4.2).
OFPP_IN_PORT, OFPP_CONTROLLER, OFPP_ANY = 0xFFFFFFF8, 0xFFFFFFFD, 0xFFFFFFFF
OFPG_ALL, OFPG_ANY = 0xFFFFFFFC, 0xFFFFFFFF
OFPTT_ALL = 0xFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPCML_MAX = 0xFFE5  # "no buffering": the whole frame (section 7.2.5)
OFP_DEFAULT_PRIORITY = 0x8000
# Action types (section 7.2.5) and instruction types (7.2.4).
OFPAT_OUTPUT, OFPAT_GROUP, OFPAT_SET_FIELD, OFPAT_EXPERIMENTER = 0, 22, 25, 0xFFFF
OFPIT_GOTO_TABLE, OFPIT_WRITE_METADATA, OFPIT_APPLY_ACTIONS = 1, 2, 4
OFPMT_OXM, OFPXMC_OPENFLOW_BASIC = 1, 0x8000
# Open vSwitch's Nicira extension actions (nicira-ext.h): vendor id and subtypes.
NX_VENDOR, NXAST_REG_MOVE, NXAST_REG_LOAD = 0x00002320, 6, 7
# Open vSwitch's ND fields, class ERICOXM_OF (ovs-fields(7)): name -> (field, bytes).
ERICOXM_OF = 0x1000
OVS_ND_FIELDS = {"nd_reserved": (1, 4), "nd_options_type": (2, 1)}


def _mac(value: FieldValue, size: int) -> bytes:
    return bytes.fromhex(str(value).replace(":", ""))


def _ipv4(value: FieldValue, size: int) -> bytes:
    return socket.inet_pton(socket.AF_INET, str(value))


def _ipv6(value: FieldValue, size: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, str(value))


def _uint(value: FieldValue, size: int) -> bytes:
    assert isinstance(value, int)
    return value.to_bytes(size, "big")  # OverflowError if it does not fit


# OXM fields of class OPENFLOW_BASIC (section 7.2.3.7): name -> (field number, bytes,
# packer). Names are those of `controller.openflow.Match` (and os-ken's OFPMatch keywords).
OXM_FIELDS: dict[str, tuple[int, int, Callable[[FieldValue, int], bytes]]] = {
    "in_port": (0, 4, _uint),
    "in_phy_port": (1, 4, _uint),
    "metadata": (2, 8, _uint),
    "eth_dst": (3, 6, _mac),
    "eth_src": (4, 6, _mac),
    "eth_type": (5, 2, _uint),
    "vlan_vid": (6, 2, _uint),
    "vlan_pcp": (7, 1, _uint),
    "ip_dscp": (8, 1, _uint),
    "ip_ecn": (9, 1, _uint),
    "ip_proto": (10, 1, _uint),
    "ipv4_src": (11, 4, _ipv4),
    "ipv4_dst": (12, 4, _ipv4),
    "tcp_src": (13, 2, _uint),
    "tcp_dst": (14, 2, _uint),
    "udp_src": (15, 2, _uint),
    "udp_dst": (16, 2, _uint),
    "sctp_src": (17, 2, _uint),
    "sctp_dst": (18, 2, _uint),
    "icmpv4_type": (19, 1, _uint),
    "icmpv4_code": (20, 1, _uint),
    "arp_op": (21, 2, _uint),
    "arp_spa": (22, 4, _ipv4),
    "arp_tpa": (23, 4, _ipv4),
    "arp_sha": (24, 6, _mac),
    "arp_tha": (25, 6, _mac),
    "ipv6_src": (26, 16, _ipv6),
    "ipv6_dst": (27, 16, _ipv6),
    "ipv6_flabel": (28, 4, _uint),
    "icmpv6_type": (29, 1, _uint),
    "icmpv6_code": (30, 1, _uint),
    "ipv6_nd_target": (31, 16, _ipv6),
    "ipv6_nd_sll": (32, 6, _mac),
    "ipv6_nd_tll": (33, 6, _mac),
}


def _oxm_head(number: int, masked: bool, length: int) -> bytes:
    # class:16 field:7 hasmask:1 length:8 (section 7.2.3.2)
    return struct.pack("!I", OFPXMC_OPENFLOW_BASIC << 16 | number << 9 | masked << 8 | length)


# name -> (header unmasked, header masked, bytes, packer), worked out once.
_OXM = {
    name: (_oxm_head(number, False, size), _oxm_head(number, True, 2 * size), size, pack)
    for name, (number, size, pack) in OXM_FIELDS.items()
}

_HEADER = struct.Struct("!BBHI")  # ofp_header (section 7.1)
# ofp_flow_mod after the header: cookie, cookie_mask, table_id, command, idle_timeout,
# hard_timeout, priority, buffer_id, out_port, out_group, flags, 2 pad (section 7.3.4.1).
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_GROUP_MOD = struct.Struct("!HBxI")  # command, type, pad, group_id (section 7.3.4.2)
_BUCKET = struct.Struct("!HHII4x")  # len, weight, watch_port, watch_group, pad (7.3.4.2)
_MATCH_HEAD = struct.Struct("!HH")  # ofp_match type, length (section 7.2.3.1)
_OUTPUT = struct.Struct("!HHIH6x")  # ofp_action_output (section 7.2.5)
_GROUP = struct.Struct("!HHI")  # ofp_action_group
_ACTION_HEAD = struct.Struct("!HH")
_NX_HEAD = struct.Struct("!HHIH")  # type, len, vendor, subtype (nicira-ext.h nx_action_header)
_NX_REG_MOVE = struct.Struct("!HHH")  # n_bits, src_ofs, dst_ofs, then two OXM headers
_NX_REG_LOAD = struct.Struct("!HIQ")  # ofs_nbits, dst OXM header, value
_INSTRUCTION_HEAD = struct.Struct("!HH4x")  # apply-actions: type, len, pad (7.2.4)
_WRITE_METADATA = struct.Struct("!HH4xQQ")
_GOTO = struct.Struct("!HHB3x")

# The whole-field widths a Move copies (NXAST_REG_MOVE needs the bit count).
FIELD_BITS = {
    "eth_src": 48,
    "eth_dst": 48,
    "arp_sha": 48,
    "arp_tha": 48,
    "arp_spa": 32,
    "arp_tpa": 32,
    "ipv6_src": 128,
    "ipv6_dst": 128,
}


def encode(msg: Message, xid: int) -> bytes:
    """The wire bytes of one pipeline message, with transaction id `xid`."""
    if isinstance(msg, AddFlow):
        return _message(OFPT_FLOW_MOD, xid, flow_mod(msg.flow))
    if isinstance(msg, DeleteFlow):
        f = msg.flow
        fixed = _FLOW_MOD.pack(
            0, 0, TABLE_ID[f.table], OFPFC_DELETE_STRICT, 0, 0, f.priority,
            OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
        )  # fmt: skip
        return _message(OFPT_FLOW_MOD, xid, fixed + match(f.match))
    if isinstance(msg, ClearFlows):
        fixed = _FLOW_MOD.pack(
            0, 0, OFPTT_ALL, OFPFC_DELETE, 0, 0, OFP_DEFAULT_PRIORITY,
            OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
        )  # fmt: skip
        return _message(OFPT_FLOW_MOD, xid, fixed + match(Match()))
    if isinstance(msg, AddGroup):
        return _message(OFPT_GROUP_MOD, xid, group_mod(OFPGC_ADD, msg.group))
    if isinstance(msg, ModifyGroup):
        return _message(OFPT_GROUP_MOD, xid, group_mod(OFPGC_MODIFY, msg.group))
    if isinstance(msg, DeleteGroup):
        return _message(OFPT_GROUP_MOD, xid, _GROUP_MOD.pack(OFPGC_DELETE, OFPGT_ALL, msg.group_id))
    if isinstance(msg, ClearGroups):
        return _message(OFPT_GROUP_MOD, xid, _GROUP_MOD.pack(OFPGC_DELETE, OFPGT_ALL, OFPG_ALL))
    if isinstance(msg, Barrier):
        return _message(OFPT_BARRIER_REQUEST, xid, b"")
    raise TypeError(f"not a pipeline message: {msg!r}")


def _message(msg_type: int, xid: int, body: bytes) -> bytes:
    return _HEADER.pack(OFP_VERSION, msg_type, 8 + len(body), xid) + body


def flow_mod(flow: Flow) -> bytes:
    """An OFPFC_ADD flow-mod's body (after the header)."""
    fixed = _FLOW_MOD.pack(
        flow.cookie, 0, TABLE_ID[flow.table], OFPFC_ADD, flow.idle_timeout, 0, flow.priority,
        OFP_NO_BUFFER, 0, 0, OFPFF_SEND_FLOW_REM if flow.notify_removed else 0,
    )  # fmt: skip
    out = [fixed, match(flow.match)]
    if flow.actions:
        actions = b"".join(map(action, flow.actions))
        out += [_INSTRUCTION_HEAD.pack(OFPIT_APPLY_ACTIONS, 8 + len(actions)), actions]
    if flow.write_metadata is not None:
        out.append(_WRITE_METADATA.pack(OFPIT_WRITE_METADATA, 24, *flow.write_metadata))
    if flow.goto is not None:
        out.append(_GOTO.pack(OFPIT_GOTO_TABLE, 8, TABLE_ID[flow.goto]))
    return b"".join(out)


@functools.lru_cache(maxsize=4096)
def match(m: Match) -> bytes:
    """An OXM ofp_match, its fields in OXM number order (which meets every prerequisite
    ordering of section 7.2.3.6), padded to 8 bytes. All fields are of one class, so the
    third byte (field number, then the mask bit) orders the encoded fields as numbers."""
    body = b"".join(sorted([_oxm(name, value) for name, value in m.fields]))
    length = 4 + len(body)
    return _MATCH_HEAD.pack(OFPMT_OXM, length) + body + bytes(-length % 8)


@functools.lru_cache(maxsize=4096)
def _oxm(name: str, value: FieldValue) -> bytes:
    # Cached, as are whole matches: a learned MAC's flows on the switches of its segment
    # repeat the same few fields (its MAC, the segment's metadata) and matches.
    plain, masked, size, pack = _OXM[name]
    if isinstance(value, tuple):
        v, m = pack(value[0], size), pack(value[1], size)
        # A masked value carries only the bits its mask keeps (section 7.2.3.5).
        v = (int.from_bytes(v, "big") & int.from_bytes(m, "big")).to_bytes(size, "big")
        return masked + v + m
    return plain + pack(value, size)


def _oxm_header(name: str) -> bytes:
    number, _, _ = OXM_FIELDS[name]
    return _oxm_head(number, False, FIELD_BITS[name] // 8)


@functools.lru_cache(maxsize=4096)
def action(a: Action) -> bytes:
    if isinstance(a, Output):
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, a.port, OFPCML_MAX)
    if isinstance(a, ToGroup):
        return _GROUP.pack(OFPAT_GROUP, 8, a.group_id)
    if isinstance(a, ToController):
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, OFPP_CONTROLLER, a.max_len)
    if isinstance(a, ToInPort):
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, OFPP_IN_PORT, OFPCML_MAX)
    if isinstance(a, Move):
        body = _NX_REG_MOVE.pack(FIELD_BITS[a.src], 0, 0) + _oxm_header(a.src) + _oxm_header(a.dst)
        return _padded_nx(NXAST_REG_MOVE, body)
    if isinstance(a, SetField) and a.field in OVS_ND_FIELDS:
        # No OXM type for these in OpenFlow 1.3: Open vSwitch's "load:value->field".
        field, size = OVS_ND_FIELDS[a.field]
        header = ERICOXM_OF << 16 | field << 9 | size
        return _padded_nx(NXAST_REG_LOAD, _NX_REG_LOAD.pack(size * 8 - 1, header, int(a.value)))
    if isinstance(a, SetField):
        oxm = _oxm(a.field, a.value)
        length = 4 + len(oxm)
        return _ACTION_HEAD.pack(OFPAT_SET_FIELD, length + -length % 8) + oxm + bytes(-length % 8)
    raise TypeError(f"not a pipeline action: {a!r}")


def _padded_nx(subtype: int, body: bytes) -> bytes:
    length = 10 + len(body)
    pad = -length % 8
    return _NX_HEAD.pack(OFPAT_EXPERIMENTER, length + pad, NX_VENDOR, subtype) + body + bytes(pad)


def group_mod(command: int, group: Group) -> bytes:
    """An add or modify group-mod's body: an `all` group's buckets watch nothing; a fast-
    failover bucket watches its port (section 7.3.4.2)."""
    kind = OFPGT_FF if group.type == "ff" else OFPGT_ALL
    watch = group.watch if group.type == "ff" else (OFPP_ANY,) * len(group.buckets)
    buckets = []
    for actions, port in zip(group.buckets, watch, strict=True):
        packed = b"".join(map(action, actions))
        buckets.append(_BUCKET.pack(16 + len(packed), 0, port, OFPG_ANY) + packed)
    return _GROUP_MOD.pack(command, kind, group.group_id) + b"".join(buckets)
