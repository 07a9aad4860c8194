"""Every pipeline message becomes a well-formed OpenFlow 1.3 message (no switch needed)."""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import ofproto_protocol, ofproto_v1_3, ofproto_v1_3_parser

from controller.ofwire import flow_from_ofp, group_from_ofp, to_ofp
from controller.openflow import (
    AddFlow,
    AddGroup,
    DeleteFlow,
    DeleteGroup,
    Flow,
    Message,
    ModifyGroup,
)
from controller.pipeline import TABLE_ID, diff, plan_switch, program
from tests.unit.controller.fixtures import HQ_PORTS, config, fabric

DP = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)


def _encode(msg: Message) -> Any:
    ofp_msg = to_ofp(DP, msg)
    ofp_msg.set_xid(1)
    ofp_msg.serialize()
    assert ofp_msg.buf[0] == ofproto_v1_3.OFP_VERSION
    return ofp_msg


def test_a_whole_program_and_a_diff_serialize() -> None:
    plan = plan_switch(config(), fabric(), "hq", HQ_PORTS)
    moved = plan_switch(config(), fabric(), "hq", {**HQ_PORTS, "h2": 7})
    smaller = plan_switch(config(), fabric(), "hq", {"h1": 1})
    messages = [*program(plan), *diff(plan, moved), *diff(moved, smaller)]
    kinds = {type(m) for m in messages}
    assert {AddFlow, DeleteFlow, ModifyGroup, DeleteGroup} <= kinds
    for msg in messages:
        _encode(msg)


def test_flow_fields_survive_the_translation() -> None:
    plan = plan_switch(config(), fabric(), "hq", HQ_PORTS)
    classify = next(f for f in plan.flows if f.match.get("in_port") == HQ_PORTS["vx100-1"])
    mod = _encode(AddFlow(classify))
    assert isinstance(mod, ofproto_v1_3_parser.OFPFlowMod)
    assert mod.table_id == TABLE_ID["classify"] and mod.cookie == classify.cookie
    assert mod.match["in_port"] == HQ_PORTS["vx100-1"]
    kinds = [type(i).__name__ for i in mod.instructions]
    assert kinds == ["OFPInstructionWriteMetadata", "OFPInstructionGotoTable"]
    assert mod.instructions[1].table_id == TABLE_ID["acl"]
    # Nothing anywhere outputs to NORMAL (or FLOOD): forwarding is ours alone.
    reserved = {ofproto_v1_3.OFPP_NORMAL, ofproto_v1_3.OFPP_FLOOD, ofproto_v1_3.OFPP_ALL}
    for flow in plan.flows:
        for inst in _encode(AddFlow(flow)).instructions:
            for action in getattr(inst, "actions", []):
                assert getattr(action, "port", None) not in reserved


# -- what a switch reports back is read as the same pipeline entries --------------------


def _as_reported(flow: Flow) -> Any:
    """The OFPFlowStats a switch would report for `flow`, via the wire encoding."""
    mod = _encode(AddFlow(flow))
    parsed = ofproto_v1_3_parser.OFPFlowMod.parser(
        DP, mod.version, mod.msg_type, mod.msg_len, mod.xid, mod.buf
    )
    return ofproto_v1_3_parser.OFPFlowStats(
        table_id=parsed.table_id,
        priority=parsed.priority,
        cookie=parsed.cookie,
        match=parsed.match,
        instructions=parsed.instructions,
    )


def test_every_planned_flow_and_group_reads_back_as_itself() -> None:
    plan = plan_switch(config(), fabric(), "hq", HQ_PORTS)
    for flow in plan.flows:
        assert flow_from_ofp(DP, _as_reported(flow)) == flow
    for group in plan.groups:
        mod = to_ofp(DP, AddGroup(group))
        desc = ofproto_v1_3_parser.OFPGroupDescStats(mod.type, mod.group_id, mod.buckets)
        assert group_from_ofp(DP, desc) == group


def test_entries_that_are_not_ours_are_recognised() -> None:
    parser, ofp = ofproto_v1_3_parser, ofproto_v1_3
    normal = parser.OFPInstructionActions(
        ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(ofp.OFPP_NORMAL)]
    )
    hand_made = parser.OFPFlowStats(
        table_id=0, priority=1, cookie=0, match=parser.OFPMatch(), instructions=[normal]
    )
    assert flow_from_ofp(DP, hand_made) is None
    other_table = parser.OFPFlowStats(
        table_id=9, priority=1, cookie=0, match=parser.OFPMatch(), instructions=[]
    )
    assert flow_from_ofp(DP, other_table) is None
    select = parser.OFPGroupDescStats(ofp.OFPGT_SELECT, 1, [])
    assert group_from_ofp(DP, select) is None
