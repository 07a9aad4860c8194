"""A model OpenFlow 1.3 switch: apply the pipeline's messages, then ask where a frame goes.

It keeps the rules a real switch enforces, so a wrong plan fails here first: a flow may
only point at a group that exists (OFPBAC_BAD_OUT_GROUP) and only go to a later table
(OFPBIC_BAD_TABLE_ID); deleting a group removes the flows that use it (section 6.5); a
frame is never output to its ingress port (section 7.2.1); a table miss with no entry drops.

    switch = FakeSwitch()
    switch.apply(program(plan))
    switch.forward(in_port=1, eth_dst="ff:ff:ff:ff:ff:ff")   # frozenset({2, 3})
    switch.dead_ports.add(3)  # BFD says port 3's path is down: fast failover skips it

Set-field and move actions rewrite the frame's fields for the actions after them, as on a
real switch; a frame sent back out of its ingress port (an ARP or ND answer) is kept in
`Trace.answers` with the fields it left with.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    Message,
    ModifyGroup,
    Move,
    Output,
    SetField,
    ToController,
    ToGroup,
    ToInPort,
)
from controller.pipeline import PIPELINE, Table

CONTROLLER = 0xFFFFFFFD  # OFPP_CONTROLLER: a trace that includes it raised a packet-in


class OpenFlowError(Exception):
    """The switch rejected a message, as a real one would with an OFPT_ERROR."""


@dataclass(frozen=True)
class Frame:
    in_port: int
    eth_dst: str
    eth_src: str = "02:00:00:00:00:ff"
    eth_type: int = 0x0800
    vlan_vid: int = 0  # OFPVID_NONE: untagged; a tagged frame has 0x1000 | VID
    # More header fields by OXM name: ipv4_src="192.0.2.1", ip_proto=6, tcp_dst=23, ...
    more: tuple[tuple[str, int | str], ...] = ()


@dataclass(frozen=True)
class Trace:
    flows: tuple[Flow, ...]
    ports: frozenset[int]  # empty: dropped
    to_controller: bool = False  # a packet-in was sent
    # Frames sent back out of the ingress port (answers), as their header fields.
    answers: tuple[dict[str, int | str], ...] = ()


class FakeSwitch:
    def __init__(self, pipeline: Sequence[Table] = PIPELINE) -> None:
        self.table_id = {t.name: t.table_id for t in pipeline}
        self.flows: dict[tuple[str, int, object], Flow] = {}
        self.groups: dict[int, Group] = {}
        # Ports that are not live (BFD down): fast-failover buckets watching them are skipped.
        self.dead_ports: set[int] = set()

    def apply(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            self._apply(msg)

    def _apply(self, msg: Message) -> None:
        match msg:
            case AddFlow(flow):
                self._check_flow(flow)
                self.flows[flow.key] = flow
            case DeleteFlow(flow):
                self.flows.pop(flow.key, None)
            case ClearFlows():
                self.flows.clear()
            case AddGroup(group):
                if group.group_id in self.groups:
                    raise OpenFlowError(f"OFPGMFC_GROUP_EXISTS: group {group.group_id}")
                self._check_chain(group)
                self.groups[group.group_id] = group
            case ModifyGroup(group):
                if group.group_id not in self.groups:
                    raise OpenFlowError(f"OFPGMFC_UNKNOWN_GROUP: group {group.group_id}")
                self._check_chain(group)
                self.groups[group.group_id] = group
            case DeleteGroup(group_id):
                if any(ToGroup(group_id) in b for g in self.groups.values() for b in g.buckets):
                    raise OpenFlowError(f"OFPGMFC_CHAINED_GROUP: group {group_id} is in use")
                self.groups.pop(group_id, None)
                self.flows = {
                    k: f for k, f in self.flows.items() if ToGroup(group_id) not in f.actions
                }
            case ClearGroups():
                self.groups.clear()
                self.flows = {
                    k: f
                    for k, f in self.flows.items()
                    if not any(isinstance(a, ToGroup) for a in f.actions)
                }
            case Barrier():
                pass

    def _check_chain(self, group: Group) -> None:
        for bucket in group.buckets:
            for action in bucket:
                if isinstance(action, ToGroup) and action.group_id not in self.groups:
                    raise OpenFlowError(f"OFPGMFC_CHAINING_UNSUPPORTED: {action} missing")

    def _check_flow(self, flow: Flow) -> None:
        if flow.table not in self.table_id:
            raise OpenFlowError(f"OFPBRC_BAD_TABLE_ID: no table {flow.table!r}")
        if flow.goto is not None and (
            flow.goto not in self.table_id or self.table_id[flow.goto] <= self.table_id[flow.table]
        ):
            raise OpenFlowError(f"OFPBIC_BAD_TABLE_ID: {flow.table} cannot go to {flow.goto}")
        for action in flow.actions:
            if isinstance(action, ToGroup) and action.group_id not in self.groups:
                raise OpenFlowError(f"OFPBAC_BAD_OUT_GROUP: group {action.group_id} missing")

    # -- lookups -------------------------------------------------------------------------

    def forward(
        self, in_port: int, eth_dst: str, eth_src: str = "02:00:00:00:00:ff"
    ) -> frozenset[int]:
        """The ports a frame entering at `in_port` leaves by (empty: dropped)."""
        return self.trace_frame(in_port, eth_dst, eth_src).ports

    def trace_frame(
        self,
        in_port: int,
        eth_dst: str,
        eth_src: str = "02:00:00:00:00:ff",
        eth_type: int = 0x0800,
        **more: int | str,
    ) -> Trace:
        """What an untagged frame entering at `in_port` hits, where it leaves, and whether
        it raised a packet-in. `more`: header fields by OXM name (ipv4_src, tcp_dst, ...)."""
        frame = Frame(in_port, eth_dst.lower(), eth_src.lower(), eth_type, more=tuple(more.items()))
        return self.trace(frame)

    def trace(self, frame: Frame) -> Trace:
        """The flows `frame` hits, table by table, and the ports it leaves by."""
        fields: dict[str, int | str] = {
            "in_port": frame.in_port,
            "eth_dst": frame.eth_dst,
            "eth_src": frame.eth_src,
            "eth_type": frame.eth_type,
            "vlan_vid": frame.vlan_vid,
            "metadata": 0,
            **dict(frame.more),
        }
        hits: list[Flow] = []
        out: set[int] = set()
        answers: list[dict[str, int | str]] = []
        table: str | None = min(self.table_id, key=self.table_id.__getitem__)
        while table is not None:
            flow = self._lookup(table, fields)
            if flow is None:  # no table-miss entry: drop (section 5.4)
                break
            hits.append(flow)
            out |= self._run(flow.actions, fields, answers)
            if flow.write_metadata is not None:
                value, mask = flow.write_metadata
                current = int(fields["metadata"])
                fields["metadata"] = (current & ~mask) | (value & mask)
            table = flow.goto
        out.discard(frame.in_port)
        punted = CONTROLLER in out
        out.discard(CONTROLLER)
        return Trace(tuple(hits), frozenset(out), punted, tuple(answers))

    def _lookup(self, table: str, fields: dict[str, int | str]) -> Flow | None:
        candidates = [
            f
            for f in self.flows.values()
            if f.table == table and all(_matches(fields.get(k), v) for k, v in f.match.fields)
        ]
        best = max((f.priority for f in candidates), default=None)
        winners = [f for f in candidates if f.priority == best]
        if len(winners) > 1:
            # Overlapping entries of equal priority: the spec leaves the choice undefined.
            raise OpenFlowError(f"ambiguous match in {table}: {winners}")
        return winners[0] if winners else None

    def _run(
        self,
        actions: tuple[Action, ...],
        fields: dict[str, int | str],
        answers: list[dict[str, int | str]],
    ) -> set[int]:
        """Apply `actions` to the frame `fields` (in place); the ports it leaves by."""
        ports: set[int] = set()
        for action in actions:
            if isinstance(action, Output):
                ports.add(action.port)
            elif isinstance(action, ToController):
                ports.add(CONTROLLER)
            elif isinstance(action, ToInPort):
                answers.append(dict(fields))
            elif isinstance(action, SetField):
                fields[action.field] = action.value
            elif isinstance(action, Move):
                if action.src not in fields:  # OFPBAC_MATCH_INCONSISTENT on a real switch
                    raise OpenFlowError(f"{action}: the frame has no {action.src}")
                fields[action.dst] = fields[action.src]
            else:
                ports |= self._group(action, fields, answers)
        return ports

    def _group(
        self, action: ToGroup, fields: dict[str, int | str], answers: list[dict[str, int | str]]
    ) -> set[int]:
        ports: set[int] = set()
        group = self.groups[action.group_id]
        if group.type == "ff":
            # Section 5.6.1: the first bucket whose watched port is live; none: drop.
            live = [
                b
                for b, w in zip(group.buckets, group.watch, strict=True)
                if w not in self.dead_ports
            ]
            return self._run(live[0], dict(fields), answers) if live else set()
        for bucket in group.buckets:  # each bucket acts on its own copy (section 5.6.1)
            ports |= self._run(bucket, dict(fields), answers)
        return ports


def _matches(have: int | str | None, want: FieldValue) -> bool:
    if have is None:
        return False
    if isinstance(want, tuple):
        value, mask = want
        return _int(have) & _int(mask) == _int(value) & _int(mask)
    return _int(have) == _int(want)


def _int(value: int | str) -> int:
    """A field value as a number: MACs and IP addresses (masks too) are written as text."""
    if not isinstance(value, str):
        return value
    if _MAC.match(value):
        return int(value.replace(":", ""), 16)
    return int(ipaddress.ip_address(value))


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
