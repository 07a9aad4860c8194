"""Pipeline messages <-> os-ken OpenFlow 1.3 objects, both ways, so the pipeline stays
free of os-ken. `*_from_ofp` read back what a switch reports it holds (flow and group
stats), returning None for entries that are none of ours. `to_ofp` is os-ken's encoding of
what we send: the app packs its messages itself (`controller.ofencode`, faster), and the
tests hold that to these bytes. Round trips are tested at wire level in
tests/unit/controller/test_ofwire.py.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from controller.ofencode import ERICOXM_OF, FIELD_BITS, NX_VENDOR, NXAST_REG_LOAD, OVS_ND_FIELDS
from controller.openflow import (
    Action,
    AddFlow,
    AddGroup,
    Barrier,
    ClearFlows,
    ClearGroups,
    DeleteFlow,
    DeleteGroup,
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
from controller.pipeline import PIPELINE, TABLE_ID

# -- our messages -> os-ken's -------------------------------------------------------------


def to_ofp(dp: Any, msg: Message) -> Any:
    """The os-ken message for one pipeline message. `dp` may be an ofproto ProtocolDesc."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    match msg:
        case AddFlow(flow):
            return parser.OFPFlowMod(
                dp,
                cookie=flow.cookie,
                table_id=TABLE_ID[flow.table],
                command=ofp.OFPFC_ADD,
                priority=flow.priority,
                match=parser.OFPMatch(**dict(flow.match.fields)),
                instructions=_instructions(dp, flow),
                idle_timeout=flow.idle_timeout,
                flags=ofp.OFPFF_SEND_FLOW_REM if flow.notify_removed else 0,
            )
        case DeleteFlow(flow):
            return parser.OFPFlowMod(
                dp,
                table_id=TABLE_ID[flow.table],
                command=ofp.OFPFC_DELETE_STRICT,
                priority=flow.priority,
                match=parser.OFPMatch(**dict(flow.match.fields)),
                out_port=ofp.OFPP_ANY,
                out_group=ofp.OFPG_ANY,
            )
        case ClearFlows():
            return parser.OFPFlowMod(
                dp,
                table_id=ofp.OFPTT_ALL,
                command=ofp.OFPFC_DELETE,
                out_port=ofp.OFPP_ANY,
                out_group=ofp.OFPG_ANY,
            )
        case AddGroup(group):
            return _group_mod(dp, ofp.OFPGC_ADD, group)
        case ModifyGroup(group):
            return _group_mod(dp, ofp.OFPGC_MODIFY, group)
        case DeleteGroup(group_id):
            return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id)
        case ClearGroups():
            return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, ofp.OFPG_ALL)
        case Barrier():
            return parser.OFPBarrierRequest(dp)


def _ovs_field(name: str) -> str:
    """os-ken's name for an OVS ND field: its OXM number, class << 7 | field."""
    return f"field_{ERICOXM_OF << 7 | OVS_ND_FIELDS[name][0]}"


_OVS_FIELD_NAMES = {_ovs_field(n): n for n in OVS_ND_FIELDS}


def _actions(dp: Any, actions: tuple[Action, ...]) -> list[Any]:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out = []
    for a in actions:
        if isinstance(a, Output):
            out.append(parser.OFPActionOutput(a.port))
        elif isinstance(a, ToController):
            out.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, a.max_len))
        elif isinstance(a, ToInPort):
            out.append(parser.OFPActionOutput(ofp.OFPP_IN_PORT))
        elif isinstance(a, Move):
            bits = FIELD_BITS[a.src]
            out.append(parser.NXActionRegMove(src_field=a.src, dst_field=a.dst, n_bits=bits))
        elif isinstance(a, SetField) and a.field in OVS_ND_FIELDS:
            out.append(_load(parser, a.field, int(a.value)))
        elif isinstance(a, SetField):
            out.append(parser.OFPActionSetField(**{a.field: a.value}))
        else:
            out.append(parser.OFPActionGroup(a.group_id))
    return out


def _load(parser: Any, name: str, value: int) -> Any:
    # os-ken cannot encode a set_field of a field it has no type for, so this is Open
    # vSwitch's "load:value->field" (NXAST_REG_LOAD: ofs_nbits, OXM header, value).
    field, size = OVS_ND_FIELDS[name]
    header = ERICOXM_OF << 16 | field << 9 | size
    body = struct.pack("!HHIQ", NXAST_REG_LOAD, size * 8 - 1, header, value)
    return parser.OFPActionExperimenterUnknown(NX_VENDOR, body)


def _instructions(dp: Any, flow: Flow) -> list[Any]:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out = []
    if flow.actions:
        out.append(
            parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(dp, flow.actions))
        )
    if flow.write_metadata is not None:
        out.append(parser.OFPInstructionWriteMetadata(*flow.write_metadata))
    if flow.goto is not None:
        out.append(parser.OFPInstructionGotoTable(TABLE_ID[flow.goto]))
    return out


def _group_mod(dp: Any, command: int, group: Group) -> Any:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if group.type == "ff":
        # OpenFlow 1.3 section 7.3.4.2: a fast-failover bucket names the port it watches.
        buckets = [
            parser.OFPBucket(watch_port=port, watch_group=ofp.OFPG_ANY, actions=_actions(dp, b))
            for b, port in zip(group.buckets, group.watch, strict=True)
        ]
        return parser.OFPGroupMod(dp, command, ofp.OFPGT_FF, group.group_id, buckets)
    buckets = [parser.OFPBucket(actions=_actions(dp, b)) for b in group.buckets]
    return parser.OFPGroupMod(dp, command, ofp.OFPGT_ALL, group.group_id, buckets)


# -- os-ken's -> ours: what a switch reports it holds ----------------------------------------

TABLE_NAME = {t.table_id: t.name for t in PIPELINE}


def flow_from_ofp(dp: Any, stats: Any) -> Flow | None:
    """The pipeline flow a switch's flow entry (OFPFlowStats) is; None if none of ours."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    table = TABLE_NAME.get(stats.table_id)
    actions: tuple[Action, ...] | None = ()
    metadata, goto = None, None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions = _actions_from_ofp(dp, inst.actions)
        elif isinstance(inst, parser.OFPInstructionWriteMetadata):
            metadata = (inst.metadata, inst.metadata_mask)
        elif isinstance(inst, parser.OFPInstructionGotoTable) and inst.table_id in TABLE_NAME:
            goto = TABLE_NAME[inst.table_id]
        else:
            return None
    if table is None or actions is None:
        return None
    match = Match.of(**{k: tuple(v) if isinstance(v, list) else v for k, v in stats.match.items()})
    notify = bool((stats.flags or 0) & ofp.OFPFF_SEND_FLOW_REM)
    idle = stats.idle_timeout or 0
    return Flow(table, stats.priority, match, stats.cookie, actions, metadata, goto, idle, notify)


def group_from_ofp(dp: Any, desc: Any) -> Group | None:
    """The pipeline group a switch's group (OFPGroupDescStats) is; None if none of ours."""
    ofp = dp.ofproto
    if desc.type not in (ofp.OFPGT_ALL, ofp.OFPGT_FF):
        return None
    buckets = [_actions_from_ofp(dp, b.actions) for b in desc.buckets]
    if any(b is None for b in buckets):
        return None
    actions = tuple(b for b in buckets if b is not None)
    if desc.type == ofp.OFPGT_FF:
        return Group(desc.group_id, "ff", actions, tuple(b.watch_port for b in desc.buckets))
    return Group(desc.group_id, "all", actions)


def _actions_from_ofp(dp: Any, actions: list[Any]) -> tuple[Action, ...] | None:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out: list[Action] = []
    for action in actions:
        # Reserved ports (NORMAL, FLOOD, CONTROLLER, ...) are above OFPP_MAX: never ours.
        if isinstance(action, parser.OFPActionOutput) and action.port <= ofp.OFPP_MAX:
            out.append(Output(action.port))
        elif isinstance(action, parser.OFPActionOutput) and action.port == ofp.OFPP_CONTROLLER:
            out.append(ToController(action.max_len))
        elif isinstance(action, parser.OFPActionOutput) and action.port == ofp.OFPP_IN_PORT:
            out.append(ToInPort())
        elif isinstance(action, parser.OFPActionGroup):
            out.append(ToGroup(action.group_id))
        elif isinstance(action, parser.NXActionRegMove) and _whole(action):
            out.append(Move(_oxm_name(action.src_field), _oxm_name(action.dst_field)))
        elif isinstance(action, parser.OFPActionSetField):
            out.append(_set_field(action.key, action.value))
        elif isinstance(action, parser.NXActionRegLoad) and action.dst in _OVS_FIELD_NAMES:
            out.append(SetField(_OVS_FIELD_NAMES[action.dst], action.value))
        else:
            return None
    return tuple(out)


def _oxm_name(name: str) -> str:
    # Open vSwitch reports a move's fields by their NXM headers (NXM_OF_ETH_SRC, ...), which
    # os-ken names "eth_src_nxm": the same fields as the OXM ones we send.
    return name.removesuffix("_nxm")


def _whole(action: Any) -> bool:
    bits = FIELD_BITS.get(_oxm_name(action.src_field))
    return bool(
        bits == FIELD_BITS.get(_oxm_name(action.dst_field)) == action.n_bits
        and action.src_ofs == action.dst_ofs == 0
    )


def _set_field(key: str, value: Any) -> SetField:
    if key in _OVS_FIELD_NAMES:  # os-ken shows a field it has no type for in base64
        return SetField(_OVS_FIELD_NAMES[key], int.from_bytes(base64.b64decode(value), "big"))
    return SetField(key, value)


# -- port descriptions ---------------------------------------------------------------------


def port_name(desc: Any) -> str:
    name = desc.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def named_ports(body: Any, ofp: Any) -> dict[str, int]:
    # Reserved numbers (OFPP_LOCAL, the bridge's own port) are above OFPP_MAX.
    return {port_name(p): p.port_no for p in body if p.port_no <= ofp.OFPP_MAX}
