"""The os-ken shim: the only place that talks OpenFlow on the wire.

On each switch connection it asks for the port descriptions, resolves fabric port names to
numbers, and sends what `controller.pipeline` computed (groups before flows, then a
barrier). When ports come and go it re-plans and sends only the difference. It decides
nothing itself.

os-ken 4.x ships no `osken-manager` command, so `Controller.start()` sets the listen
address in os-ken's oslo config and starts `AppManager` in-process.
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3
from prometheus_client import Counter, Gauge, Histogram

from controller import ofguard, views
from controller.learning import Host, MacTable
from controller.neighbours import Neighbour, NeighbourTable, sender
from controller.ofencode import encode
from controller.ofwire import flow_from_ofp, group_from_ofp, named_ports, port_name
from controller.openflow import AddFlow, Barrier, DeleteFlow, Flow, Group, Match, Message
from controller.packetin import Inbox, PacketIn
from controller.pipeline import (
    LEARNED,
    SEGMENT_MASK,
    TABLE_ID,
    FabricError,
    SegmentAt,
    SwitchPlan,
    address_delta,
    diff,
    host_delta,
    plan_switch,
    program,
    segment_at,
    static_places,
)
from overcast.config import OvercastConfig
from overcast.fabric import Fabric, FabricPort
from overcast.metrics import REGISTRY

log = logging.getLogger(__name__)

SWITCHES = Gauge(
    "overcast_controller_switches_connected",
    "Switches connected to the controller, by site (unknown: not in the fabric)",
    ["site"],
    registry=REGISTRY,
)
PROGRAMMINGS = Counter(
    "overcast_controller_programmings_total",
    "Programmings a switch confirmed: 'full' on connect, 'diff' after a change, 'audit', 'wipe'",
    ["site", "kind"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "overcast_controller_messages_sent_total",
    "OpenFlow messages sent to switches, by site and kind",
    ["site", "kind"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "overcast_controller_openflow_errors_total",
    "OFPT_ERROR messages switches sent back",
    ["site"],
    registry=REGISTRY,
)
DRIFTS = Counter(
    "overcast_controller_drifts_total",
    "Audits that found a switch holding something other than its plan (and restored it)",
    ["site"],
    registry=REGISTRY,
)
PROGRAM_SECONDS = Histogram(
    "overcast_controller_program_seconds",
    "From the first message of a programming to the switch's barrier reply",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
PLANNED_FLOWS = Gauge(
    "overcast_controller_planned_flows",
    "Flow entries the current plan puts on each site's switch",
    ["site"],
    registry=REGISTRY,
)


PACKET_INS = Counter(
    "overcast_controller_packet_ins_total",
    "Packet-ins switches sent, by reason (no_match: the learn table's miss, an unknown source MAC)",
    ["reason"],
    registry=REGISTRY,
)
LEARNED_MACS = Gauge(
    "overcast_controller_learned_macs",
    "MACs learned and installed at every site of their segment, by segment",
    ["segment"],
    registry=REGISTRY,
)
MAC_EVENTS = Counter(
    "overcast_controller_mac_events_total",
    "MAC table events: learned, moved, expired, refused (a configured host's MAC seen "
    "elsewhere), known (a packet-in for a MAC already learned there)",
    ["event"],
    registry=REGISTRY,
)
TABLE_LIMITS = Counter(
    "overcast_controller_table_limit_hits_total",
    "Times a port stopped learning for a while: port_full, segment_full (MAC table limits) "
    "or rate (packet-ins per port per second)",
    ["limit"],
    registry=REGISTRY,
)
LEARNED_IPS = Gauge(
    "overcast_controller_learned_addresses",
    "IP addresses bound to host MACs (from their ARP and ND) for the ARP/ND proxy, by segment",
    ["segment"],
    registry=REGISTRY,
)
ADDRESS_EVENTS = Counter(
    "overcast_controller_address_events_total",
    "Address table events: learned, moved (to another MAC), known, mac_full, segment_full",
    ["event"],
    registry=REGISTRY,
)
_PACKET_IN_REASONS = {0: "no_match", 1: "action", 2: "invalid_ttl"}  # OpenFlow 1.3 7.4.1


class ControllerError(Exception):
    """The controller cannot start; the message says why and what to do."""


@dataclass
class _Switch:
    """What the app knows about one connected switch."""

    datapath: Any
    site: str
    ofports: dict[str, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # port number -> name
    plan: SwitchPlan | None = None
    # The plan's flows by identity: a learned change updates only its own entries here
    # (O(change), not O(plan)); `current()` folds them back into `plan` when it is read.
    index: dict[tuple[str, int, Match], Flow] = field(default_factory=dict)
    changed: bool = False
    # Each segment's ports here, for learned deltas; computed when first needed after a plan.
    segments: dict[str, SegmentAt | None] = field(default_factory=dict)
    # What the switch holds, gathered from multipart replies on connect and on each audit:
    # programming sends the difference to it (so a controller restart changes nothing).
    waiting: set[str] = field(default_factory=set)
    found_ports: dict[str, int] = field(default_factory=dict)
    found_flows: list[Flow] = field(default_factory=list)
    found_groups: list[Group] = field(default_factory=list)
    foreign: bool = False  # it holds entries that are none of ours: wipe it first
    # We sent it something while an audit's replies were on their way: they may predate it.
    stale: bool = False
    # Learned changes encoded but not yet written (see OvercastApp._send), and since when.
    outbox: list[bytes] = field(default_factory=list)
    outbox_since: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # messages in it, by kind (metrics)
    connected_at: float = field(default_factory=time.monotonic)
    # The barrier that closes the last programming: (xid, kind, when its first message went).
    barrier: tuple[int, str, float] | None = None
    errors: int = 0
    # Packets each flow entry matched, from the last flow stats (connect or audit).
    found_packets: dict[tuple[str, int, Match], int] = field(default_factory=dict)
    packets: dict[tuple[str, int, Match], int] = field(default_factory=dict)
    counted_at: float | None = None  # time.time() of `packets`

    def current(self) -> SwitchPlan | None:
        if self.plan is not None and self.changed:
            self.plan = replace(self.plan, flows=tuple(self.index.values()))
            self.changed = False
        return self.plan

    def replan(self, plan: SwitchPlan) -> None:
        self.plan, self.index, self.changed = plan, {f.key: f for f in plan.flows}, False
        self.segments = {}


class EventReload(event.EventBase):  # type: ignore[misc]
    """New config and fabric (on SIGHUP): re-plan every connected switch."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings


class EventAudit(event.EventBase):  # type: ignore[misc]
    """Time to compare every switch with its plan."""


class EventView(event.EventBase):  # type: ignore[misc]
    """The API asks for a view (`controller.api`); the answer goes into `reply`."""

    def __init__(self, name: str, query: dict[str, str], reply: queue.SimpleQueue[Any]) -> None:
        super().__init__()
        self.name, self.query, self.reply = name, query, reply


class EventPacketIns(event.EventBase):  # type: ignore[misc]
    """Packet-ins, read and batched on the receive threads (`controller.packetin`)."""

    def __init__(self, batch: list[PacketIn]) -> None:
        super().__init__()
        self.batch = batch


class EventTick(event.EventBase):  # type: ignore[misc]
    """A second has passed: end learning hold-downs that are over."""


class OvercastApp(app_manager.OSKenApp):  # type: ignore[misc]
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(
        self, *args: Any, overcast: Settings, audit_interval: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.settings = overcast
        self.audit_interval = audit_interval
        self.switches: dict[int, _Switch] = {}
        self.strangers: dict[int, Any] = {}  # connected, but not in the fabric
        self.macs = MacTable(overcast.config.controller.learning, static_places(overcast.fabric))
        self.neighbours = NeighbourTable(overcast.config.controller.learning)
        self.access = _access_ports(overcast.fabric)
        # What a batch of packet-ins did, for the metrics at its end.
        self._mac_events: dict[str, int] = {}
        self._recount: set[str] = set()
        # Every message is length-checked before os-ken parses it; packet-ins skip os-ken
        # and come here in batches. Installed before os-ken starts listening.
        self.inbox = Inbox(lambda batch: self.send_event(self.name, EventPacketIns(batch)))
        ofguard.install(self.inbox)

    def start(self) -> Any:
        thread = super().start()
        if self.audit_interval > 0:
            hub.spawn(self._audit_clock)
        hub.spawn(self._tick_clock)
        return thread

    def _tick_clock(self) -> None:
        while True:
            hub.sleep(1.0)
            self.send_event(self.name, EventTick())

    def _audit_clock(self) -> None:
        # Only ticks here; the audit itself runs in the app's event thread like all else.
        while True:
            hub.sleep(self.audit_interval)
            self.send_event(self.name, EventAudit())

    # -- connection lifecycle -----------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])  # type: ignore[untyped-decorator]
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if ev.state == MAIN_DISPATCHER:
            self._connected(dp)
        elif ev.state == DEAD_DISPATCHER:
            self._forget(dp)

    def _connected(self, dp: Any) -> None:
        address = _peer(dp)
        older = self.strangers.get(dp.id) or getattr(self.switches.get(dp.id), "datapath", None)
        if older is not None and older is not dp:
            # One datapath id, two connections: the newest wins (as OVS and most
            # controllers do), since the older one is most likely a switch that restarted
            # before its old TCP connection timed out. Serving both would program one
            # switch twice and leave the connection count wrong.
            log.warning(
                "switch dpid %#x connected again from %s; closing its older connection from %s",
                dp.id,
                address,
                _peer(older),
            )
            self._forget(older, "replaced by a newer connection")
            older.close()
        fabric_switch = self.settings.fabric.by_dpid(dp.id)
        if fabric_switch is None:
            self.strangers[dp.id] = dp
            SWITCHES.labels("unknown").inc()
            log.warning(
                "switch dpid %#x from %s is not in the fabric; leaving it unprogrammed "
                "(fail_mode=secure drops everything)",
                dp.id,
                address,
            )
            return
        self.switches[dp.id] = _Switch(dp, fabric_switch.site)
        SWITCHES.labels(fabric_switch.site).inc()
        log.info("switch %s (dpid %#x) connected from %s", fabric_switch.site, dp.id, address)
        self._ask(self.switches[dp.id], {"ports", "flows", "groups"})

    def _ask(self, sw: _Switch, parts: set[str]) -> None:
        """Request what the switch holds; the replies are gathered in `_received`."""
        dp = sw.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self._flush(sw)  # what we have told it comes first, so the replies include it
        sw.waiting, sw.found_flows, sw.found_groups, sw.foreign = set(parts), [], [], False
        sw.stale = False
        sw.found_packets = {}
        if "ports" in parts:
            dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))
        dp.send_msg(parser.OFPFlowStatsRequest(dp, table_id=ofp.OFPTT_ALL))
        dp.send_msg(parser.OFPGroupDescStatsRequest(dp, 0))

    @set_ev_cls(EventAudit)  # type: ignore[untyped-decorator]
    def _audit(self, ev: EventAudit) -> None:
        for sw in self.switches.values():
            if sw.plan is not None and not sw.waiting:
                self._ask(sw, {"flows", "groups"})

    def _forget(self, dp: Any, why: str = "disconnected") -> None:
        # A switch that reconnects gets a new datapath before the old one is declared dead.
        dpid: int = dp.id
        if self.strangers.get(dpid) is dp:
            del self.strangers[dpid]
            SWITCHES.labels("unknown").dec()
        sw = self.switches.get(dpid)
        if sw is not None and sw.datapath is dp:
            del self.switches[dpid]
            SWITCHES.labels(sw.site).dec()
            log.info("switch %s (dpid %#x) %s", sw.site, dpid, why)

    @set_ev_cls(EventReload)  # type: ignore[untyped-decorator]
    def _reload(self, ev: EventReload) -> None:
        self.settings = ev.settings
        # Learned MACs stay where their port is still a learning access port of their segment.
        self.macs.limits = ev.settings.config.controller.learning
        self.macs.static = static_places(ev.settings.fabric)
        self.access = _access_ports(ev.settings.fabric)

        def learns(site: str, port: str, segment: str) -> bool:
            access = self.access.get((site, port))
            return access is not None and access.segment == segment and not access.macs

        self.macs.drop(
            lambda h: (
                learns(h.site, h.port, h.segment) and (h.segment, h.mac) not in self.macs.static
            )
        )
        # Addresses stay while their MAC is still somewhere and their segment still proxied.
        self.neighbours.limits = ev.settings.config.controller.learning
        self.neighbours.drop(
            lambda n: (
                ev.settings.config.controller.proxies(n.segment)
                and n.segment in ev.settings.config.l2_segments()
                and self._where(n.segment, n.mac) is not None
            )
        )
        self._count_macs()
        for dp in [*self.strangers.values(), *(s.datapath for s in self.switches.values())]:
            sw = self.switches.get(dp.id)
            now = self.settings.fabric.by_dpid(dp.id)
            if sw is not None and now is not None and now.site == sw.site:
                self._program(sw)
                continue
            self._forget(dp, "changed in the fabric")
            if sw is not None:  # it left the fabric, or moved to another site
                self._send(sw, program(SwitchPlan(sw.site)), "wipe")
            self._connected(dp)

    # -- ports -> plan ------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _port_desc(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._awaiting(ev, "ports")
        if sw is not None:
            sw.found_ports.update(named_ports(ev.msg.body, sw.datapath.ofproto))
            self._received(sw, "ports", ev)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _flow_stats(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._awaiting(ev, "flows")
        if sw is not None:
            for stats in ev.msg.body:
                flow = flow_from_ofp(sw.datapath, stats)
                sw.foreign |= flow is None
                if flow is not None:
                    sw.found_flows.append(flow)
                    sw.found_packets[flow.key] = stats.packet_count
            self._received(sw, "flows", ev)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _group_desc(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._awaiting(ev, "groups")
        if sw is not None:
            for desc in ev.msg.body:
                group = group_from_ofp(sw.datapath, desc)
                sw.foreign |= group is None
                if group is not None:
                    sw.found_groups.append(group)
            self._received(sw, "groups", ev)

    def _switch(self, ev: Any) -> _Switch | None:
        """The switch a message came from, if that connection is still the one we serve."""
        dp = ev.msg.datapath
        sw = self.switches.get(dp.id)
        return sw if sw is not None and sw.datapath is dp else None

    def _awaiting(self, ev: Any, part: str) -> _Switch | None:
        sw = self._switch(ev)
        return sw if sw is not None and part in sw.waiting else None

    def _received(self, sw: _Switch, part: str, ev: Any) -> None:
        if ev.msg.flags & sw.datapath.ofproto.OFPMPF_REPLY_MORE:
            return  # the rest of a multipart reply is on its way (OpenFlow 1.3 section 7.3.5)
        sw.waiting.discard(part)
        if part == "flows":
            sw.packets, sw.counted_at = sw.found_packets, time.time()
        if sw.waiting:
            return
        if sw.plan is None:
            sw.ofports = sw.found_ports
            sw.names = {n: name for name, n in sw.ofports.items()}
            self._program(sw)
        elif not sw.stale and not sw.outbox:  # else the replies predate it: compare next time
            self._restore(sw, sw.current() or SwitchPlan(sw.site))

    def _restore(self, sw: _Switch, plan: SwitchPlan) -> None:
        """After an audit: undo whatever changed on the switch behind our back."""
        found = SwitchPlan(sw.site, tuple(sw.found_groups), tuple(sw.found_flows))
        messages = program(plan) if sw.foreign else diff(found, plan)
        if messages:
            DRIFTS.labels(sw.site).inc()
            log.warning(
                "switch %s drifted from its plan (%s); restoring it with %d messages",
                sw.site,
                "entries that are not ours" if sw.foreign else "changed entries",
                len(messages),
            )
            self._send(sw, messages, "audit")

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _port_status(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._switch(ev)
        if sw is None or "ports" in sw.waiting:
            return  # the port description reply still to come includes it
        ofp = sw.datapath.ofproto
        desc = ev.msg.desc
        name = port_name(desc)
        if sw.plan is None:
            # Ports came, flows and groups not yet: the plan is made from found_ports, so the
            # change goes there (dropped, the port would stay unprogrammed: no audit asks
            # for ports again).
            if ev.msg.reason == ofp.OFPPR_DELETE:
                sw.found_ports.pop(name, None)
            elif desc.port_no <= ofp.OFPP_MAX:
                sw.found_ports[name] = desc.port_no
            return
        ofports = dict(sw.ofports)
        if ev.msg.reason == ofp.OFPPR_DELETE:
            ofports.pop(name, None)
            gone = self.macs.forget_port(sw.site, name)
            for host in gone:
                self.neighbours.forget_mac(host.segment, host.mac)
            if gone:
                log.info("switch %s: port %s left; forgetting %d MACs", sw.site, name, len(gone))
                self._count_macs()
                for segment in {h.segment for h in gone}:
                    self._replan_segment(segment, but=sw)
        elif desc.port_no <= ofp.OFPP_MAX:
            ofports[name] = desc.port_no
        if ofports != sw.ofports:
            log.info("switch %s: port %s is now %s", sw.site, name, ofports.get(name, "gone"))
            sw.ofports = ofports
            sw.names = {n: name for name, n in ofports.items()}
            self._program(sw)

    # -- learning -----------------------------------------------------------------------

    @set_ev_cls(EventPacketIns)  # type: ignore[untyped-decorator]
    def _packet_ins(self, ev: EventPacketIns) -> None:
        reasons: dict[int, int] = {}
        for packet_in in self.inbox.take(ev.batch):
            reasons[packet_in.reason] = reasons.get(packet_in.reason, 0) + 1
            self._learn_from(packet_in)
        # Metrics once per batch: a label lookup costs about as much as a flow-mod's encoding.
        for reason, count in reasons.items():
            PACKET_INS.labels(_PACKET_IN_REASONS.get(reason, str(reason))).inc(count)
        for name, count in self._mac_events.items():
            MAC_EVENTS.labels(name).inc(count)
        for segment in self._recount:
            self._count_macs(segment)
        self._mac_events, self._recount = {}, set()
        self._flush_when_idle()

    def _learn_from(self, msg: PacketIn) -> None:
        """A frame from an unknown source MAC (the learn table's miss) or a host's ARP/ND
        with an address not yet bound (snoop): learn what it says, within the limits."""
        sw = self.switches.get(msg.datapath.id)
        if sw is None or sw.datapath is not msg.datapath or sw.plan is None:
            return
        frame = msg.data
        name = sw.names.get(msg.in_port) if msg.in_port is not None else None
        port = self.access.get((sw.site, name)) if name is not None else None
        if name is None or port is None or len(frame) < 14:
            return
        if frame[6] & 1:
            return  # a group address is never a source (IEEE 802)
        src = frame[6:12].hex(":")
        now = time.monotonic()
        if not self.macs.admit(sw.site, name, now):
            TABLE_LIMITS.labels("rate").inc()
            log.warning(
                "switch %s port %s: more than %d packet-ins a second; it forwards without "
                "learning for %ds",
                sw.site,
                name,
                self.macs.limits.packet_ins_per_port,
                self.macs.limits.hold_down,
            )
            self._program(sw)
            return
        if msg.table_id == TABLE_ID["learn"] and not port.macs:
            self._learn_mac(sw, name, port.segment, src, now)
        if self.settings.config.controller.proxies(port.segment):
            self._learn_address(sw, name, port.segment, frame, now)

    def _learn_mac(self, sw: _Switch, name: str, segment: str, src: str, now: float) -> None:
        outcome, old = self.macs.learn(segment, src, sw.site, name, now)
        event = "refused" if outcome == "static" else outcome
        self._mac_events[event] = self._mac_events.get(event, 0) + 1
        if outcome in ("learned", "moved"):
            was = f" (was at {old.site} port {old.port})" if old is not None else ""
            # A line per new MAC is for debugging (the API's /macs and metrics show them all);
            # a move is worth telling.
            level = logging.INFO if old is not None else logging.DEBUG
            log.log(level, "learned %s in %s at %s port %s%s", src, segment, sw.site, name, was)
            self._recount.add(segment)
            self._apply_host(segment, self.macs.hosts[(segment, src)], old)
        elif outcome in ("port_full", "segment_full"):
            TABLE_LIMITS.labels(outcome).inc()
            limits = self.macs.limits
            log.warning(
                "switch %s port %s: MAC table limit hit (%s: %d per port, %d per segment); "
                "not learning %s, the port forwards without learning for %ds",
                sw.site,
                name,
                outcome,
                limits.max_macs_per_port,
                limits.max_macs_per_segment,
                src,
                limits.hold_down,
            )
            self._program(sw)
        elif outcome == "static":
            log.warning(
                "switch %s port %s: %s is a configured host's MAC elsewhere; not learned",
                sw.site,
                name,
                src,
            )

    def _learn_address(
        self, sw: _Switch, name: str, segment: str, frame: bytes, now: float
    ) -> None:
        said = sender(frame)
        # Only from a MAC known to be at this port: a refused or foreign MAC binds nothing.
        if said is None or self._where(segment, said[1]) != (sw.site, name):
            return
        ip, mac = said
        outcome, old = self.neighbours.learn(segment, ip, mac, now)
        ADDRESS_EVENTS.labels(outcome).inc()
        if outcome in ("learned", "moved"):
            was = f" (was {old.mac})" if old is not None else ""
            log.debug(
                "learned %s is %s in %s at %s port %s%s", ip, mac, segment, sw.site, name, was
            )
            LEARNED_IPS.labels(segment).set(self.neighbours.count(segment))
            self._apply_address(segment, self.neighbours.bindings[(segment, ip)], old)
        elif outcome in ("mac_full", "segment_full"):
            limit = "ips_per_mac" if outcome == "mac_full" else "ips_per_segment"
            TABLE_LIMITS.labels(limit).inc()
            limits = self.macs.limits
            self.macs.hold(sw.site, name, now)
            log.warning(
                "switch %s port %s: address table limit hit (%s: %d per MAC, %d per segment); "
                "not binding %s to %s, the port stops learning for %ds",
                sw.site,
                name,
                limit,
                limits.max_ips_per_mac,
                limits.max_ips_per_segment,
                ip,
                mac,
                limits.hold_down,
            )
            self._program(sw)

    def _where(self, segment: str, mac: str) -> tuple[str, str] | None:
        """(site, port) a MAC is at: a configured or tagged host's, else where it was learned."""
        host = self.macs.hosts.get((segment, mac))
        return (host.site, host.port) if host else self.macs.static.get((segment, mac))

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _flow_removed(self, ev: Any) -> None:
        msg = ev.msg
        sw = self._switch(ev)
        ofp = msg.datapath.ofproto
        if (
            sw is None
            or msg.reason != ofp.OFPRR_IDLE_TIMEOUT
            or msg.table_id != TABLE_ID["learn"]
            or not msg.cookie & LEARNED
        ):
            return
        segment = self._segment_of_vni(msg.cookie & SEGMENT_MASK)
        in_port, mac = msg.match.get("in_port"), msg.match.get("eth_src")
        name = next((n for n, number in sw.ofports.items() if number == in_port), None)
        if segment is None or name is None or mac is None:
            return
        host = self.macs.forget(segment, str(mac), sw.site, name)
        if host is not None:
            MAC_EVENTS.labels("expired").inc()
            log.info("%s in %s idle at %s port %s; forgotten", mac, segment, sw.site, name)
            unbound = self.neighbours.forget_mac(segment, host.mac)
            self._count_macs(segment)
            self._apply_host(segment, None, host, unbound)
            self._flush_when_idle()

    def _apply_host(
        self,
        segment: str,
        host: Host | None,
        old: Host | None,
        unbound: list[Neighbour] | None = None,
    ) -> None:
        """One MAC learned, moved or forgotten (with its addresses, `unbound`): send each
        switch of its segment just the flows that change (learn_delta), and keep each plan
        what plan_switch would give."""
        either = host or old
        bound = unbound if unbound is not None else []
        if either is not None and unbound is None:
            bound = self.neighbours.of_mac(segment, either.mac)
        for sw in self._segment_switches(segment):
            self._update(sw, *host_delta(self._segment_at(sw, segment), host, old, bound))

    def _apply_address(self, segment: str, new: Neighbour, old: Neighbour | None) -> None:
        """One address bound or moved to another MAC: the same, through address_delta."""
        now = (new, self._where(segment, new.mac))
        was = (old, self._where(segment, old.mac)) if old is not None else None
        for sw in self._segment_switches(segment):
            self._update(sw, *address_delta(self._segment_at(sw, segment), now, was))

    def _segment_at(self, sw: _Switch, segment: str) -> SegmentAt | None:
        if segment not in sw.segments:
            sw.segments[segment] = segment_at(
                self.settings.config, self.settings.fabric, sw.site, sw.ofports, segment
            )
        return sw.segments[segment]

    def _segment_switches(self, segment: str) -> list[_Switch]:
        seg = self.settings.config.l2_segments().get(segment)
        return [
            sw
            for sw in self.switches.values()
            if seg is not None and sw.site in seg.sites and sw.plan is not None
        ]

    def _update(self, sw: _Switch, add: list[Flow], gone: list[Flow]) -> None:
        """Send `sw` a learned change, and keep its plan in step."""
        assert sw.plan is not None
        if not add and not gone:
            return
        for f in gone:
            sw.index.pop(f.key, None)
        for f in add:
            sw.index[f.key] = f
        sw.changed = True
        self._send(sw, [*map(AddFlow, add), *map(DeleteFlow, gone)], "learn")

    @set_ev_cls(EventView)  # type: ignore[untyped-decorator]
    def _view(self, ev: EventView) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        try:
            ev.reply.put(views.VIEWS[ev.name](self._state(), ev.query))
        except Exception as exc:  # a KeyError is a 404; the API thread re-raises it
            ev.reply.put(exc)

    def _state(self) -> views.State:
        now = time.monotonic()
        return views.State(
            config=self.settings.config,
            fabric=self.settings.fabric,
            switches=[
                views.SwitchState(
                    site=sw.site,
                    dpid=dpid,
                    address=_peer(sw.datapath),
                    connected_s=now - sw.connected_at,
                    programmed=sw.plan is not None and sw.barrier is None,
                    ofports=dict(sw.ofports),
                    unresolved=plan.unresolved if plan else (),
                    flows=plan.flows if plan else (),
                    packets=dict(sw.packets),
                    counted_at=sw.counted_at,
                )
                for dpid, sw in sorted(self.switches.items())
                for plan in [sw.current()]
            ],
            strangers=[(dpid, _peer(dp)) for dpid, dp in sorted(self.strangers.items())],
            hosts=list(self.macs.hosts.values()),
            addresses=list(self.neighbours.bindings.values()),
            held=sorted(self.macs.holds),
            now=now,
        )

    @set_ev_cls(EventTick)  # type: ignore[untyped-decorator]
    def _tick(self, ev: EventTick) -> None:
        for sw in self.switches.values():  # learned changes still waiting go out now
            self._flush(sw)
        for site, port in self.macs.release(time.monotonic()):
            log.info("switch %s port %s learns again", site, port)
            for sw in self.switches.values():
                if sw.site == site and sw.plan is not None:
                    self._program(sw)

    def _replan_segment(self, segment: str, but: _Switch | None = None) -> None:
        seg = self.settings.config.l2_segments().get(segment)
        for sw in self.switches.values():
            if seg is not None and sw.site in seg.sites and sw.plan is not None and sw is not but:
                self._program(sw)

    def _segment_of_vni(self, vni: int) -> str | None:
        return next(
            (n for n, s in self.settings.config.l2_segments().items() if s.vni == vni), None
        )

    def _count_macs(self, only: str | None = None) -> None:
        for segment in [only] if only else self.settings.config.l2_segments():
            LEARNED_MACS.labels(segment).set(self.macs.count(segment))
            LEARNED_IPS.labels(segment).set(self.neighbours.count(segment))

    def _program(self, sw: _Switch) -> None:
        try:
            plan = plan_switch(
                self.settings.config,
                self.settings.fabric,
                sw.site,
                sw.ofports,
                self.macs.hosts.values(),
                self.macs.held_ports(sw.site),
                self.neighbours.bindings.values(),
            )
        except FabricError as exc:  # checked before it gets here; only a bug does
            log.error("switch %s: cannot plan: %s", sw.site, exc)
            return
        kind = "full" if sw.plan is None else "diff"
        current = sw.current()
        if current is not None:
            messages = diff(current, plan)
        elif sw.foreign:
            log.warning("switch %s holds entries that are not ours; wiping it", sw.site)
            messages = program(plan)
        else:
            found = SwitchPlan(sw.site, tuple(sw.found_groups), tuple(sw.found_flows))
            messages = diff(found, plan)
        sw.replan(plan)
        PLANNED_FLOWS.labels(sw.site).set(len(plan.flows))
        if messages or kind == "full":
            self._send(sw, messages, kind)
            log.info(
                "switch %s: sent %d messages (%s); plan holds %d flows, %d groups%s",
                sw.site,
                len(messages),
                kind,
                len(plan.flows),
                len(plan.groups),
                f"; waiting for ports {', '.join(plan.unresolved)}" if plan.unresolved else "",
            )

    def _send(self, sw: _Switch, messages: list[Message], kind: str) -> None:
        """Send `messages`, then a barrier closing them, in one write.

        Learned changes (`kind` "learn") wait while more events are queued, so a burst
        of packet-ins costs one write and one barrier per switch, not one per packet-in
        (os-ken queues every send for its writer thread, and every barrier reply is an
        event of its own). They go out as soon as the queue is empty, and before
        anything else is sent to that switch, so the order on the wire is kept.
        """
        if not sw.outbox:
            sw.outbox_since = time.monotonic()
        dp, counts = sw.datapath, sw.counts
        for msg in messages:
            sw.outbox.append(encode(msg, _next_xid(dp)))
            counts[type(msg).__name__] = counts.get(type(msg).__name__, 0) + 1
        if kind != "learn" or self.events.empty():
            self._flush(sw, kind)

    def _flush(self, sw: _Switch, kind: str = "learn") -> None:
        if not sw.outbox:
            return
        sw.stale |= bool(sw.waiting)
        dp = sw.datapath
        xid = _next_xid(dp)
        sw.outbox.append(encode(Barrier(), xid))
        sw.barrier, sw.errors = (xid, kind, sw.outbox_since), 0
        dp.send(b"".join(sw.outbox))
        sw.outbox = []
        # Metrics once per write, not per message: label lookups cost as much as encoding.
        for kind_name, count in sw.counts.items():
            MESSAGES.labels(sw.site, kind_name).inc(count)
        sw.counts = {}
        PLANNED_FLOWS.labels(sw.site).set(len(sw.index))

    def _flush_when_idle(self) -> None:
        if self.events.empty():
            for sw in self.switches.values():
                self._flush(sw)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _barrier(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._switch(ev)
        if sw is None or sw.barrier is None or sw.barrier[0] != ev.msg.xid:
            return
        _, kind, started = sw.barrier
        seconds = time.monotonic() - started
        sw.barrier = None
        PROGRAMMINGS.labels(sw.site, kind).inc()
        PROGRAM_SECONDS.labels(kind).observe(seconds)
        if sw.errors:
            log.error("switch %s: programming (%s) done with %d errors", sw.site, kind, sw.errors)
        else:
            # One per learned MAC: worth a line only when debugging.
            log.log(
                logging.DEBUG if kind == "learn" else logging.INFO,
                "switch %s programmed (%s) in %.1f ms, %.1f ms after it connected",
                sw.site,
                kind,
                seconds * 1000,
                (time.monotonic() - sw.connected_at) * 1000,
            )

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)  # type: ignore[untyped-decorator]
    def _error(self, ev: Any) -> None:
        self._flush_when_idle()  # learned changes held back for a burst
        sw = self._switch(ev)
        site = sw.site if sw else "unknown"
        if sw is not None:
            sw.errors += 1
        ERRORS.labels(site).inc()
        log.error(
            "switch %s rejected a message: type %d code %d (xid %s)",
            site,
            ev.msg.type,
            ev.msg.code,
            ev.msg.xid,
        )


# -- running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """Mutual TLS on the OpenFlow channel: our certificate and key, and the CA whose
    signature a switch's certificate must carry (PEM files)."""

    cert: str
    key: str
    ca: str

    def check(self) -> None:
        """Load the files now, so a bad one is a clear error rather than a dead listener."""
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, self.key)
            context.load_verify_locations(self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ControllerError(
                f"cannot use TLS files (cert {self.cert}, key {self.key}, CA {self.ca}): "
                f"{exc}; give PEM files of a matching certificate and key"
            ) from None


@dataclass(frozen=True)
class Settings:
    config: OvercastConfig
    fabric: Fabric


class Controller:
    """os-ken with the Overcast app, listening for switches on `host:port` (TCP)."""

    def __init__(
        self,
        config: OvercastConfig,
        fabric: Fabric,
        host: str,
        port: int,
        tls: Tls | None = None,
        audit_interval: float = 0.0,
    ) -> None:
        """`audit_interval` (seconds, 0 = never): how often to compare every switch with
        its plan and undo drift, such as flows added by hand."""
        self.settings = Settings(config, fabric)
        self.host, self.port, self.tls = host, port, tls
        self.audit_interval = audit_interval
        self._app: OvercastApp | None = None

    def start(self) -> None:
        """Listen and serve in the background; raises ControllerError if it cannot listen."""
        _check_listen(self.host, self.port)
        if self.tls is None and not is_loopback(self.host):
            log.warning(
                "listening for switches on %s:%d over plain TCP: anyone who can reach it can "
                "connect as a switch and read or disturb the network; outside a lab, give "
                "--tls-cert, --tls-key and --tls-ca (mutual TLS)",
                self.host,
                self.port,
            )
        cfg.CONF(args=[], project="os_ken", default_config_files=[])
        cfg.CONF.set_override("ofp_listen_host", self.host)
        if self.tls is None:
            cfg.CONF.set_override("ofp_tcp_listen_port", self.port)
        else:
            self.tls.check()
            cfg.CONF.set_override("ofp_ssl_listen_port", self.port)
            cfg.CONF.set_override("ctl_cert", self.tls.cert)
            cfg.CONF.set_override("ctl_privkey", self.tls.key)
            # With a CA, os-ken requires and verifies the switch's certificate.
            cfg.CONF.set_override("ca_certs", self.tls.ca)
        # Echo keepalives (OpenFlow 1.3 section 6.3): a switch that stops answering is
        # dropped within ~15 s and re-programmed when it returns, not left half-open.
        cfg.CONF.set_override("echo_request_interval", 5.0)
        cfg.CONF.set_override("maximum_unreplied_echo_requests", 3)
        # The plans hold hundreds of thousands of long-lived flow objects once many MACs are
        # learned; at Python's default thresholds (700, 10, 10) the cycle collector went over
        # them again and again, 35-40% of the time per packet-in (README, "Packet-in
        # throughput"). Collect the young generation every 100,000 allocations instead.
        gc.set_threshold(100_000, 20, 100)
        # os-ken's threads cannot be stopped (its native hub has no kill). Started from a
        # daemon thread they are daemons too, so the process exits cleanly on SIGTERM.
        ready = threading.Event()
        failure: list[BaseException] = []

        def boot() -> None:
            try:
                manager = app_manager.AppManager.get_instance()
                manager.load_apps(["os_ken.controller.ofp_handler", __name__])
                contexts = manager.create_contexts()
                manager.instantiate_apps(
                    **contexts, overcast=self.settings, audit_interval=self.audit_interval
                )
                self._app = manager.applications["OvercastApp"]
            except BaseException as exc:
                failure.append(exc)
            finally:
                ready.set()

        threading.Thread(target=boot, name="os-ken", daemon=True).start()
        ready.wait()
        if failure:
            raise ControllerError(f"os-ken failed to start: {failure[0]!r}")
        log.info(
            "controller listening on %s:%d (OpenFlow 1.3 over %s)",
            self.host,
            self.port,
            "TCP" if self.tls is None else "mutual TLS",
        )

    def ask(self, name: str, query: dict[str, str]) -> Any:
        """A view for the API, taken in the app's own thread; raises what the view raised."""
        if self._app is None:
            raise ControllerError("the controller is not running; start() it first")
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._app.send_event(self._app.name, EventView(name, query, reply))
        try:
            answer = reply.get(timeout=5.0)
        except queue.Empty:
            raise TimeoutError from None
        if isinstance(answer, Exception):
            raise answer
        return answer

    def reload(self, config: OvercastConfig, fabric: Fabric) -> None:
        """Re-plan every connected switch for a new config and fabric (checked by the caller)."""
        if self._app is None:
            raise ControllerError("the controller is not running; start() it first")
        self._app.send_event(self._app.name, EventReload(Settings(config, fabric)))


def _access_ports(fabric: Fabric) -> dict[tuple[str, str], FabricPort]:
    """(site, port name) -> each access port."""
    return {
        (switch.site, port.name): port
        for switch in fabric.switches.values()
        for port in switch.ports
        if port.kind == "access"
    }


def _next_xid(dp: Any) -> int:
    """The connection's next transaction id, from the counter os-ken's own sends use."""
    dp.xid = (dp.xid + 1) & 0xFFFFFFFF
    return int(dp.xid)


def _peer(dp: Any) -> str:
    return "{}:{}".format(*dp.address[:2]) if dp.address else "?"


def is_loopback(host: str) -> bool:
    """True if `host` (an address, or "localhost") is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(host: str, port: int) -> None:
    """Fail now with a clear message, not later inside an os-ken thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fix = (
                "ports below 1024 need root; use the OpenFlow port 6653"
                if exc.errno == errno.EACCES
                else "pick a free port or an address this namespace has (ip -br addr)"
            )
            raise ControllerError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; {fix}"
            ) from None
