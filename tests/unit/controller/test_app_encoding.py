"""Every pipeline message becomes a well-formed OpenFlow 1.3 message (no switch needed)."""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import ofproto_protocol, ofproto_v1_3, ofproto_v1_3_parser

from controller.app import to_ofp
from controller.openflow import AddFlow, DeleteFlow, DeleteGroup, Message, ModifyGroup
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
    assert mod.instructions[1].table_id == TABLE_ID["eth_dst"]
    # Nothing anywhere outputs to NORMAL (or FLOOD): forwarding is ours alone.
    reserved = {ofproto_v1_3.OFPP_NORMAL, ofproto_v1_3.OFPP_FLOOD, ofproto_v1_3.OFPP_ALL}
    for flow in plan.flows:
        for inst in _encode(AddFlow(flow)).instructions:
            for action in getattr(inst, "actions", []):
                assert getattr(action, "port", None) not in reserved
