"""Config + fabric -> the groups and flows one site's switch needs. Pure: no I/O, no os-ken.

The pipeline is data (`PIPELINE`): code names tables, never numbers them.

    classify  in_port (+ eth_src on access ports with known hosts) -> which segment
              (metadata = VNI) and whether it came from a tunnel
    snoop     a host's ARP/ND with an address not yet known -> the controller (a copy)
    proxy     ARP requests and neighbour solicitations for a known host -> answered here
              (remote host) or sent to its port only (local host); others go on
    eth_dst   a known MAC of that segment -> its access port, or the tunnel toward its site
    flood     broadcast, multicast, unknown unicast -> the segment's flood group

Isolation: a frame only ever carries its ingress port's segment, and every output is a
port of that segment; nothing is forwarded by NORMAL and every table misses into a drop.
Frames with an 802.1Q tag are not classified (so dropped) unless `bridge.inner_vlan_tag`
says tags are carried: access ports are untagged, and a tag naming another segment's VLAN
must not ride this segment's tunnels.
Split horizon: the full mesh of tunnels already reaches every site, so a frame that came
from a tunnel goes to local access ports only, never into another tunnel (no loops,
no spanning tree). A tunnel port is per (segment, peer site, underlay network), so it
classifies alone.
ARP/ND proxy (per segment, `controller.proxy`): the switch answers ARP requests (RFC 826)
and multicast neighbour solicitations (RFC 4861 section 7.2.3/7.2.4) for hosts at other
sites with flows alone: the request is turned into the reply in place (Ethernet and ARP,
or IPv6 and ICMPv6, sender and target swapped, the host's MAC and address set) and sent
back out of its ingress port, so it never reaches a tunnel and the controller sees no
packet-in in steady state. Open vSwitch rewrites ND with its own fields `nd_reserved`
(the NA's R/S/O flags) and `nd_options_type` (SLL -> TLL option) and keeps the ICMPv6
checksum right. A request for an address nobody has announced floods as before; ARP probes
and DAD (unspecified sender, RFC 5227, RFC 4862 section 5.4) always flood, so a stale
binding can never make a host give up its address. Hosts' addresses are learned from their
own ARP and ND (`controller.neighbours`).
Two providers: a peer reached over several underlay networks has one tunnel port per
path, and everything toward it (unicast and its copy of a flood) goes through one
fast-failover group (OpenFlow 1.3 section 5.6.1) whose buckets watch those ports in the
config's order of preference. OVS BFD on the ports decides liveness, so the switch fails
over and back by itself; the controller only installs the group. Frames arriving on any
path are accepted, so both ends need not agree on which path is active.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from controller.config import IP_PROTO, AclRule, SegmentAcl
from controller.learning import Host
from controller.neighbours import (
    ETH_ARP,
    ETH_IPV6,
    ICMPV6,
    ND_ADVERT,
    ND_SOLICIT,
    Neighbour,
    solicited_node,
)
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
from overcast.config import L2Segment, OvercastConfig
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from overcast.model import IPNetwork


@dataclass(frozen=True)
class Table:
    name: str
    table_id: int
    miss: str  # "drop" or the name of the table unmatched frames continue in
    purpose: str
    punt: bool = False  # unmatched frames also go to the controller (a packet-in)


PIPELINE = (
    Table("classify", 0, "drop", "which segment a frame belongs to, by ingress port"),
    Table("learn", 1, "acl", "source MACs learned at this switch's access ports", punt=True),
    Table("acl", 2, "snoop", "the segment's ACL: first matching rule, else its default"),
    Table("snoop", 3, "proxy", "hosts' ARP and ND naming an address not yet learned: a copy out"),
    Table("proxy", 4, "eth_dst", "ARP and ND for a known host: answered, or to its port only"),
    Table("eth_dst", 5, "flood", "unicast to a MAC known to be in the segment"),
    Table("flood", 6, "drop", "broadcast, multicast, unknown unicast with split horizon"),
    Table("advert", 7, "drop", "a solicitation made an advertisement: the target's MAC, then back"),
)
TABLE_ID = {t.name: t.table_id for t in PIPELINE}
ACL_PASS = "snoop"  # where a frame the ACL allows goes on: the table after it

# Metadata carried from classify to the later tables.
SEGMENT_MASK = 0xFFFFFF  # the segment's VNI (RFC 7348 section 5: 24 bits)
FROM_TUNNEL = 1 << 24  # the frame arrived over a tunnel: split horizon applies
CLASS_MASK = SEGMENT_MASK | FROM_TUNNEL
# The learn table already sent this frame to the controller: snoop need not send it again.
PUNTED = 1 << 25

# Every Overcast flow carries "OC" in the top cookie bits and its segment's VNI in the low
# ones (0 for pipeline-wide flows), so flows of one segment can be found on the switch.
# Flows for learned MACs carry LEARNED too: they come and go with the hosts.
COOKIE_BASE = 0x4F43 << 48
LEARNED = 1 << 32

# OpenFlow 1.3 section 7.2.3.8: vlan_vid OFPVID_NONE matches only frames without a VLAN tag.
# RFC 7348 section 6.1: a decapsulated frame with an inner VLAN tag SHOULD be discarded
# unless configured otherwise, so tunnel ports admit only untagged frames too.
OFPVID_NONE = 0x0000

PRIORITY_MISS = 0
PRIORITY_ACL_DEFAULT = 10  # a segment's ACL default, below all its rules
PRIORITY_HELD = 50  # a port in hold-down forwards without learning
PRIORITY_ACL_FIRST = 1000  # rule i of a segment's ACL: PRIORITY_ACL_FIRST - i (first wins)
PRIORITY_SEGMENT = 100
PRIORITY_FILTER = 200
PRIORITY_ASK = 60  # snoop: a host's ARP/ND with an address not yet bound goes to the controller
PRIORITY_OWNER = 150  # proxy: a host asking for its own address (gratuitous ARP) floods
PRIORITY_SKIP = 300  # snoop: already sent by the learn table, or the port is held down

# RFC 4861 section 4.4: Neighbor Advertisement flags. The switch answers with the host's own
# MAC, as the host would: Solicited, and Override (section 7.2.4; only a proxy answering
# with its own MAC would clear it). Not a router.
NA_SOLICITED, NA_OVERRIDE = 0x40000000, 0x20000000
ND_OPT_TLL = 2  # RFC 4861 section 4.6.1: Target Link-Layer Address option

# IEEE 802.1Q-2018 section 8.6.3: a bridge never forwards frames to 01-80-C2-00-00-0X
# (STP, LACP, LLDP, 802.1X): they are for the link, not the segment.
RESERVED_MACS = ("01:80:c2:00:00:00", "ff:ff:ff:ff:ff:f0")

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class FabricError(ValueError):
    """The fabric does not fit the config; `problems` lists every reason and its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class SwitchPlan:
    """Everything one switch should hold. Fabric ports it lacks (yet) are `unresolved`."""

    site: str
    groups: tuple[Group, ...] = ()
    flows: tuple[Flow, ...] = ()
    unresolved: tuple[str, ...] = ()


def cookie(vni: int = 0, learned: bool = False) -> int:
    return COOKIE_BASE | (LEARNED if learned else 0) | vni


def flood_group_id(vni: int, from_tunnel: bool) -> int:
    return vni << 1 | int(from_tunnel)


FAILOVER_GROUP_BIT = 1 << 31  # flood groups stay below 2**25
# Failover group ids stay below OFPG_MAX (0xffffff00) for peer indexes up to this
# (overcast.config refuses more sites when there are several underlay networks).
MAX_FAILOVER_PEER_INDEX = 126


def failover_group_id(vni: int, peer_index: int) -> int:
    """The fast-failover group toward the peer site at `peer_index` (config order)."""
    return FAILOVER_GROUP_BIT | peer_index << 24 | vni


# -- checking ----------------------------------------------------------------------------


def check_fabric(config: OvercastConfig, fabric: Fabric) -> list[str]:
    """Every way `fabric` contradicts `config`, each naming the entry and the fix."""
    problems: list[str] = []
    dpids: dict[int, str] = {}
    for key, switch in fabric.switches.items():
        where = f"fabric switch {key!r}"
        if switch.site not in config.sites:
            problems.append(f"{where}: unknown site {switch.site!r}; use a site from the config")
        if switch.dpid in dpids:
            problems.append(
                f"{where}: dpid {switch.dpid:#x} is already used by {dpids[switch.dpid]!r}; "
                "give every switch its own datapath id"
            )
        dpids.setdefault(switch.dpid, key)
        problems += _check_ports(config, switch, where)
    problems += _check_macs(fabric)
    return problems


def _check_ports(config: OvercastConfig, switch: SiteSwitch, where: str) -> Iterator[str]:
    seen: set[str] = set()
    for port in switch.ports:
        at = f"{where} port {port.name!r}"
        if port.name in seen:
            yield f"{at}: listed twice; list each port once"
        seen.add(port.name)
        seg = config.segments.get(port.segment)
        if seg is None:
            known = ", ".join(sorted(config.l2_segments())) or "none"
            yield f"{at}: unknown segment {port.segment!r}; use one of: {known}"
            continue
        if not isinstance(seg, L2Segment):
            yield (
                f"{at}: segment {port.segment!r} is mode l3; only l2 segments have switch "
                "ports (routed segments are not programmed by the controller yet)"
            )
        elif switch.site not in seg.sites:
            yield (
                f"{at}: site {switch.site!r} is not in segment {port.segment!r}; add it to "
                f"segments.{port.segment}.sites or remove the port"
            )
        foreign = port.peer is not None and (port.peer == switch.site or port.peer not in seg.sites)
        if port.kind == "tunnel" and foreign:
            yield (
                f"{at}: peer {port.peer!r} must be another site of segment "
                f"{port.segment!r} ({', '.join(seg.sites)})"
            )
        if port.kind == "access" and port.peer is not None:
            yield f"{at}: only tunnel ports have a peer; remove it"
        for mac in port.macs:
            if not _MAC_RE.match(mac):
                yield f"{at}: {mac!r} is not a MAC address; write it like 02:00:00:00:00:01"
            elif int(mac[:2], 16) & 1:
                yield f"{at}: {mac} is a group (multicast) address; hosts have unicast MACs"


def _check_macs(fabric: Fabric) -> Iterator[str]:
    # A MAC sits at one place per segment on each switch, or unicast cannot know where to go.
    for key, switch in fabric.switches.items():
        owner: dict[tuple[str, str], str] = {}
        for port in switch.ports:
            for mac in port.macs:
                where = owner.setdefault((port.segment, mac), port.name)
                if where != port.name:
                    yield (
                        f"fabric switch {key!r}: MAC {mac} of segment {port.segment!r} is "
                        f"listed at ports {where!r} and {port.name!r}; keep one"
                    )


# -- planning ----------------------------------------------------------------------------


def plan_switch(
    config: OvercastConfig,
    fabric: Fabric,
    site: str,
    ofports: Mapping[str, int],
    learned: Iterable[Host] = (),
    held: Collection[str] = frozenset(),
    neighbours: Iterable[Neighbour] = (),
) -> SwitchPlan:
    """The groups and flows for `site`'s switch, given its ports' OpenFlow numbers, the
    MACs learned at every site, this site's ports in learning hold-down, and the hosts'
    addresses (for the ARP/ND proxy).

    Raises FabricError if the fabric contradicts the config.
    """
    problems = check_fabric(config, fabric)
    switch = _switch_of(fabric, site)
    if switch is None:
        problems.append(f"the fabric has no switch for site {site!r}; add one or pick a site")
    if problems:
        raise FabricError(problems)
    assert switch is not None
    segments = config.l2_segments()
    ports = [p for p in switch.ports if p.name in ofports]
    by_segment: dict[str, list[FabricPort]] = {}
    for port in ports:
        by_segment.setdefault(port.segment, []).append(port)

    hosts = _hosts(fabric)
    by_host_segment: dict[str, list[Host]] = {}
    where = static_places(fabric)
    for host in learned:
        by_host_segment.setdefault(host.segment, []).append(host)
        where[(host.segment, host.mac)] = (host.site, host.port)
    by_neighbour_segment: dict[str, list[Neighbour]] = {}
    for n in neighbours:
        by_neighbour_segment.setdefault(n.segment, []).append(n)
    groups: list[Group] = []
    flows: list[Flow] = [*_pipeline_flows()]
    for name in sorted(by_segment):
        vni = segments[name].vni
        seg_ports = by_segment[name]
        at = _segment(config, site, name, vni, seg_ports, ofports)
        exits = list(at.exits)
        failover = [e.group for e in exits if e.group is not None]
        flows += _classify(vni, seg_ports, ofports, config.bridge.inner_vlan_tag)
        if name in config.controller.acls:
            flows += acl_flows(vni, config.controller.acls[name])
        flows += _held(vni, seg_ports, ofports, held)
        flows += _unicast(vni, seg_ports, ofports, exits, hosts)
        for host in by_host_segment.get(name, ()):
            flows += host_flows(at, host)
        if config.controller.proxies(name):
            flows += _snoop(vni, seg_ports, ofports, held)
            for n in by_neighbour_segment.get(name, ()):
                flows += neighbour_flows(vni, site, seg_ports, ofports, n, where.get((name, n.mac)))
        seg_groups = _flood_groups(vni, seg_ports, ofports, exits)
        groups += [*failover, *seg_groups]
        flows += _flood(vni, seg_groups)
    unresolved = tuple(sorted(p.name for p in switch.ports if p.name not in ofports))
    return SwitchPlan(site, tuple(groups), tuple(sorted(flows, key=_flow_order)), unresolved)


@dataclass(frozen=True)
class _Exit:
    """Where a segment's frames toward one peer site leave: its one tunnel port, or the
    fast-failover group over its paths."""

    ports: tuple[FabricPort, ...]
    action: Output | ToGroup
    group: Group | None = None


def _exits(
    config: OvercastConfig, vni: int, ports: list[FabricPort], ofports: Mapping[str, int]
) -> list[_Exit]:
    by_peer: dict[str | None, list[FabricPort]] = {}
    singles: list[_Exit] = []
    for port in ports:
        if port.kind != "tunnel":
            continue
        if port.peer is None:  # a tunnel the fabric does not tie to a site stands alone
            singles.append(_Exit((port,), Output(ofports[port.name])))
        else:
            by_peer.setdefault(port.peer, []).append(port)
    preference = config.underlay_names()
    order = list(config.sites)
    exits = []
    for peer, paths in by_peer.items():
        if len(paths) == 1:
            exits.append(_Exit((paths[0],), Output(ofports[paths[0].name])))
            continue
        paths.sort(key=lambda p: (_rank(preference, p.underlay), p.name))
        numbers = tuple(ofports[p.name] for p in paths)
        group = Group(
            failover_group_id(vni, order.index(str(peer))),
            "ff",
            tuple((Output(n),) for n in numbers),
            watch=numbers,
        )
        exits.append(_Exit(tuple(paths), ToGroup(group.group_id), group))
    return [*exits, *singles]


def _rank(preference: list[str], underlay: str | None) -> int:
    return preference.index(underlay) if underlay in preference else len(preference)


@dataclass(frozen=True)
class SegmentAt:
    """One segment's ports on one site's switch, with what its learned and bound deltas
    need: worked out once per switch and segment (the app keeps it until the switch is
    re-planned), not once per packet-in."""

    site: str
    segment: str
    vni: int
    ports: tuple[FabricPort, ...]
    ofports: Mapping[str, int]
    exits: tuple[_Exit, ...]
    idle_timeout: int
    proxied: bool
    # Lookups for host_flows: the segment's port names here, and the exit toward each peer.
    names: frozenset[str]
    exit_to: Mapping[str, _Exit]


def segment_at(
    config: OvercastConfig,
    fabric: Fabric,
    site: str,
    ofports: Mapping[str, int],
    segment: str,
) -> SegmentAt | None:
    """The segment's ports on `site`'s switch; None if it has none there."""
    switch = _switch_of(fabric, site)
    seg = config.l2_segments().get(segment)
    if switch is None or seg is None:
        return None
    ports = [p for p in switch.ports if p.segment == segment and p.name in ofports]
    return _segment(config, site, segment, seg.vni, ports, ofports) if ports else None


def _segment(
    config: OvercastConfig,
    site: str,
    segment: str,
    vni: int,
    ports: list[FabricPort],
    ofports: Mapping[str, int],
) -> SegmentAt:
    exits = tuple(_exits(config, vni, ports, ofports))
    exit_to: dict[str, _Exit] = {}
    for exit in exits:
        for port in exit.ports:
            if port.peer is not None:
                exit_to.setdefault(port.peer, exit)
    return SegmentAt(
        site,
        segment,
        vni,
        tuple(ports),
        ofports,
        exits,
        config.controller.learning.idle_timeout,
        config.controller.proxies(segment),
        frozenset(p.name for p in ports),
        exit_to,
    )


def learn_delta(
    config: OvercastConfig,
    fabric: Fabric,
    site: str,
    ofports: Mapping[str, int],
    host: Host | None,
    old: Host | None = None,
    neighbours: Iterable[Neighbour] = (),
) -> tuple[list[Flow], list[Flow]]:
    """The flows to add and to remove on `site`'s switch when `host` is learned (moved
    from `old`), or when `old` is forgotten (`host` None): exactly what plan_switch would
    change, without planning the whole switch again for every packet-in. `neighbours`:
    the MAC's addresses, whose proxy flows follow it."""
    either = host or old
    if either is None:
        return [], []
    at = segment_at(config, fabric, site, ofports, either.segment)
    return host_delta(at, host, old, neighbours)


def host_delta(
    at: SegmentAt | None,
    host: Host | None,
    old: Host | None = None,
    neighbours: Iterable[Neighbour] = (),
) -> tuple[list[Flow], list[Flow]]:
    """learn_delta for a segment already looked up (`segment_at`)."""
    if at is None:
        return [], []

    def flows(h: Host | None) -> list[Flow]:
        if h is None:
            return []
        out = host_flows(at, h)
        for n in neighbours if at.proxied else ():
            out += neighbour_flows(at.vni, at.site, at.ports, at.ofports, n, (h.site, h.port))
        return out

    return _delta(flows(host), flows(old))


def neighbour_delta(
    config: OvercastConfig,
    fabric: Fabric,
    site: str,
    ofports: Mapping[str, int],
    new: tuple[Neighbour, tuple[str, str] | None] | None,
    old: tuple[Neighbour, tuple[str, str] | None] | None = None,
) -> tuple[list[Flow], list[Flow]]:
    """The flows to add and to remove on `site`'s switch when an address is bound (`new`,
    with where its MAC is), moved from `old`, or unbound (`new` None)."""
    either = new or old
    if either is None:
        return [], []
    return address_delta(segment_at(config, fabric, site, ofports, either[0].segment), new, old)


def address_delta(
    at: SegmentAt | None,
    new: tuple[Neighbour, tuple[str, str] | None] | None,
    old: tuple[Neighbour, tuple[str, str] | None] | None = None,
) -> tuple[list[Flow], list[Flow]]:
    """neighbour_delta for a segment already looked up (`segment_at`)."""
    if at is None or not at.proxied:
        return [], []

    def flows(b: tuple[Neighbour, tuple[str, str] | None] | None) -> list[Flow]:
        return list(neighbour_flows(at.vni, at.site, at.ports, at.ofports, *b)) if b else []

    return _delta(flows(new), flows(old))


def _delta(add: list[Flow], was: list[Flow]) -> tuple[list[Flow], list[Flow]]:
    if not was:
        return add, []
    keys = {f.key for f in add}
    return add, [f for f in was if f.key not in keys]


def static_places(fabric: Fabric) -> dict[tuple[str, str], tuple[str, str]]:
    """(segment, MAC) -> (site, port) of every configured or tagged host."""
    return {
        (port.segment, mac): (switch.site, port.name)
        for switch in fabric.switches.values()
        for port in switch.ports
        if port.kind == "access"
        for mac in port.macs
    }


def _flow_order(flow: Flow) -> tuple[int, int, str]:
    return (TABLE_ID[flow.table], -flow.priority, str(flow.match))


def _switch_of(fabric: Fabric, site: str) -> SiteSwitch | None:
    return next((s for s in fabric.switches.values() if s.site == site), None)


def _pipeline_flows() -> Iterator[Flow]:
    for table in PIPELINE:
        goto = None if table.miss == "drop" else table.miss
        # An unknown source is told to the controller (one packet-in) and forwarded
        # anyway, so a host's first frame is not lost while it is learned.
        punt: tuple[Action, ...] = (ToController(),) if table.punt else ()
        marked = (PUNTED, PUNTED) if table.punt else None
        yield Flow(table.name, PRIORITY_MISS, Match(), cookie(), punt, marked, goto)
    yield Flow("classify", PRIORITY_FILTER, Match.of(eth_dst=RESERVED_MACS), cookie())


def _classify(
    vni: int, ports: list[FabricPort], ofports: Mapping[str, int], tagged: bool
) -> Iterator[Flow]:
    untagged: dict[str, int] = {} if tagged else {"vlan_vid": OFPVID_NONE}
    for port in ports:
        number = ofports[port.name]
        tag = vni | (FROM_TUNNEL if port.kind == "tunnel" else 0)
        # An access port with known hosts admits only their source MACs: a host cannot
        # spoof another's MAC and draw its unicast. (Remote sites check their own hosts.)
        locked = port.kind == "access" and port.macs
        matches = (
            [Match.of(in_port=number, eth_src=mac, **untagged) for mac in sorted(port.macs)]
            if locked
            else [Match.of(in_port=number, **untagged)]
        )
        # Other access ports learn their hosts' source MACs; tunnels never do (a MAC
        # behind a tunnel was learned at its own site and installed here already).
        learns = port.kind == "access" and not port.macs
        for match in matches:
            yield Flow(
                "classify",
                PRIORITY_SEGMENT,
                match,
                cookie(vni),
                write_metadata=(tag, CLASS_MASK),
                goto="learn" if learns else "acl",
            )


def acl_flows(vni: int, acl: SegmentAcl) -> Iterator[Flow]:
    """A segment's ACL as flows: rule i at PRIORITY_ACL_FIRST - i, so the first matching
    rule wins, then the default. It sees every frame of the segment, from hosts and from
    tunnels, so each direction of a conversation is checked; `both_ways` rules also
    match the reply direction."""
    segment = {"metadata": (vni, SEGMENT_MASK)}
    for i, rule in enumerate(acl.rules):
        goto = ACL_PASS if rule.action == "allow" else None
        for fields in acl_matches(rule):
            match = Match.of(**segment, **fields)
            yield Flow("acl", PRIORITY_ACL_FIRST - i, match, cookie(vni), goto=goto)
    goto = ACL_PASS if acl.default == "allow" else None
    yield Flow("acl", PRIORITY_ACL_DEFAULT, Match.of(**segment), cookie(vni), goto=goto)


def acl_rule_of(flow: Flow, vni: int) -> int | Literal["default"] | None:
    """Which rule of segment `vni`'s ACL `flow` is (its index, or "default"), if any."""
    if flow.table != "acl" or flow.cookie != cookie(vni) or flow.priority == PRIORITY_MISS:
        return None
    if flow.priority == PRIORITY_ACL_DEFAULT:
        return "default"
    return PRIORITY_ACL_FIRST - flow.priority


def acl_matches(rule: AclRule) -> list[dict[str, FieldValue]]:
    """The OXM fields of a rule (OpenFlow 1.3 section 7.2.3.6: IP fields need eth_type,
    ports need ip_proto), one set per IP family it covers, and mirrored if `both_ways`."""
    base: dict[str, FieldValue] = {}
    if rule.eth_type is not None:
        base["eth_type"] = rule.eth_type
    version = rule.ip_version()
    needs_ip = rule.ip_proto is not None or rule.ip_src is not None or rule.ip_dst is not None
    families = [version] if version else ([4, 6] if needs_ip else [0])
    out = []
    for family in families:
        fields = dict(base)
        if family:
            fields["eth_type"] = 0x0800 if family == 4 else 0x86DD
            ip = f"ipv{family}"
            for side, prefix in (("src", rule.ip_src), ("dst", rule.ip_dst)):
                if prefix is not None:
                    fields[f"{ip}_{side}"] = _prefix(prefix)
            if rule.ip_proto is not None:
                fields["ip_proto"] = IP_PROTO[rule.ip_proto]
        l4 = rule.ip_proto if rule.ip_proto in ("tcp", "udp") else None
        for side, port in (("src", rule.src_port), ("dst", rule.dst_port)):
            if port is not None and l4 is not None:
                fields[f"{l4}_{side}"] = port
        for side, mac in (("src", rule.eth_src), ("dst", rule.eth_dst)):
            if mac is not None:
                fields[f"eth_{side}"] = mac
        out.append(fields)
        if rule.both_ways:
            mirror = {_swap(k): v for k, v in fields.items()}
            if mirror != fields:
                out.append(mirror)
    return out


def _swap(name: str) -> str:
    for a, b in (("_src", "_dst"), ("_dst", "_src")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return name


def _prefix(prefix: IPNetwork) -> FieldValue:
    if prefix.prefixlen == prefix.max_prefixlen:
        return str(prefix.network_address)
    return (str(prefix.network_address), str(prefix.netmask))


def _held(
    vni: int, ports: list[FabricPort], ofports: Mapping[str, int], held: Collection[str]
) -> Iterator[Flow]:
    for port in ports:
        if port.name in held and port.kind == "access" and not port.macs:
            match = Match.of(in_port=ofports[port.name])
            yield Flow("learn", PRIORITY_HELD, match, cookie(vni), goto="acl")


def _snoop(
    vni: int, ports: list[FabricPort], ofports: Mapping[str, int], held: Collection[str]
) -> Iterator[Flow]:
    """A proxied segment's own snoop and proxy flows (not per address)."""
    ck = cookie(vni)
    yield Flow(
        "snoop",
        PRIORITY_SKIP,
        Match.of(metadata=(vni | PUNTED, SEGMENT_MASK | PUNTED)),
        ck,
        goto="proxy",
    )
    for port in ports:
        if port.name in held and port.kind == "access":
            match = Match.of(in_port=ofports[port.name])
            yield Flow("snoop", PRIORITY_SKIP + 10, match, ck, goto="proxy")
    local = {"metadata": (vni, CLASS_MASK)}  # from this site's hosts, not from a tunnel
    probe = Match.of(**local, eth_type=ETH_ARP, arp_spa="0.0.0.0")
    dad = Match.of(**local, **_nd(ND_SOLICIT), ipv6_src="::")
    for table, goto in (("snoop", "proxy"), ("proxy", "eth_dst")):
        yield Flow(table, PRIORITY_FILTER, probe, ck, goto=goto)
        yield Flow(table, PRIORITY_FILTER, dad, ck, goto=goto)
    for ask in (
        Match.of(**local, eth_type=ETH_ARP),
        *(Match.of(**local, **_nd(t)) for t in (ND_SOLICIT, ND_ADVERT)),
    ):
        yield Flow("snoop", PRIORITY_ASK, ask, ck, (ToController(),), goto="proxy")


def _nd(icmpv6_type: int) -> dict[str, FieldValue]:
    # OpenFlow 1.3 section 7.2.3.6: icmpv6_type needs ip_proto 58, which needs IPv6.
    return {"eth_type": ETH_IPV6, "ip_proto": ICMPV6, "icmpv6_type": icmpv6_type}


def neighbour_flows(
    vni: int,
    site: str,
    ports: Sequence[FabricPort],
    ofports: Mapping[str, int],
    n: Neighbour,
    at: tuple[str, str] | None,
) -> Iterator[Flow]:
    """The flows one bound address puts on `site`'s switch, its MAC being at `at`."""
    if at is None:
        return  # its MAC is known nowhere (any more): requests for it flood
    ck = cookie(vni, learned=True)
    local = {"metadata": (vni, CLASS_MASK)}
    v6 = ":" in n.ip
    if v6:
        request = Match.of(
            **local, **_nd(ND_SOLICIT), ipv6_dst=solicited_node(n.ip), ipv6_nd_target=n.ip
        )
    else:
        request = Match.of(**local, eth_type=ETH_ARP, arp_op=1, arp_tpa=n.ip)
    if at[0] != site:
        if not v6:
            yield Flow("proxy", PRIORITY_SEGMENT, request, ck, arp_answer(n))
            return
        yield Flow("proxy", PRIORITY_SEGMENT, request, ck, nd_answer(n), goto="advert")
        # Open vSwitch checks a set_field's prerequisites against the match, so the TLL
        # option's MAC is set where the frame already matches as an advertisement.
        advert = Match.of(**local, **_nd(ND_ADVERT), icmpv6_code=0, ipv6_nd_target=n.ip)
        yield Flow(
            "advert", PRIORITY_SEGMENT, advert, ck, (SetField("ipv6_nd_tll", n.mac), ToInPort())
        )
        return
    port = next((p for p in ports if p.name == at[1]), None)
    if port is None:
        return
    # Known: the host's own ARP/ND with this address asks the controller nothing.
    if v6:
        for t in (ND_SOLICIT, ND_ADVERT):
            known = Match.of(**local, **_nd(t), eth_src=n.mac, ipv6_src=n.ip)
            yield Flow("snoop", PRIORITY_SEGMENT, known, ck, goto="proxy")
    else:
        known = Match.of(**local, eth_type=ETH_ARP, eth_src=n.mac, arp_spa=n.ip)
        yield Flow("snoop", PRIORITY_SEGMENT, known, ck, goto="proxy")
        # The host announcing its own address (gratuitous ARP) floods, as ever.
        own = Match.of(**dict(request.fields), eth_src=n.mac)
        yield Flow("proxy", PRIORITY_OWNER, own, ck, goto="eth_dst")
    # A local host answers for itself; its neighbours' requests go to it alone.
    yield Flow("proxy", PRIORITY_SEGMENT, request, ck, (Output(ofports[port.name]),))


def arp_answer(n: Neighbour) -> tuple[Action, ...]:
    """Turn an ARP request for `n.ip` into `n`'s reply (RFC 826: swap sender and target,
    opcode 2), back out of the port it came in by."""
    return (
        Move("eth_src", "eth_dst"),
        SetField("eth_src", n.mac),
        SetField("arp_op", 2),
        Move("arp_sha", "arp_tha"),
        Move("arp_spa", "arp_tpa"),
        SetField("arp_sha", n.mac),
        SetField("arp_spa", n.ip),
        ToInPort(),
    )


def nd_answer(n: Neighbour) -> tuple[Action, ...]:
    """Turn a multicast neighbour solicitation for `n.ip` into `n`'s solicited advertisement
    (RFC 4861 section 7.2.4): to the soliciting address and MAC, from `n`'s, the target
    unchanged, flags S and O, the SLL option turned into a TLL option (its MAC is set in
    the advert table). Hop limit stays 255 (section 7.1.2); Open vSwitch updates the
    ICMPv6 checksum."""
    return (
        Move("eth_src", "eth_dst"),
        SetField("eth_src", n.mac),
        Move("ipv6_src", "ipv6_dst"),
        SetField("ipv6_src", n.ip),
        SetField("icmpv6_type", ND_ADVERT),
        SetField("nd_reserved", NA_SOLICITED | NA_OVERRIDE),
        SetField("nd_options_type", ND_OPT_TLL),
    )


def host_flows(at: SegmentAt, host: Host) -> list[Flow]:
    """The flows one learned MAC puts on a switch (its segment's ports there, `at`)."""
    learned = cookie(at.vni, learned=True)
    if host.site == at.site:
        if host.port not in at.names:
            return []  # its port is not (yet) on the switch
        number = at.ofports[host.port]
        # The source entry: known, so no packet-in; idle, so the switch expires it and says so.
        # Matches built sorted by field name, as Match.of would (the hot path of learning).
        source = Flow(
            "learn",
            PRIORITY_SEGMENT,
            Match((("eth_src", host.mac), ("in_port", number))),
            learned,
            goto="acl",
            idle_timeout=at.idle_timeout,
            notify_removed=True,
        )
        to_host = Match((("eth_dst", host.mac), ("metadata", (at.vni, SEGMENT_MASK))))
        return [source, Flow("eth_dst", PRIORITY_SEGMENT, to_host, learned, (Output(number),))]
    exit = at.exit_to.get(host.site)
    if exit is None:
        return []  # no tunnel toward its site (yet): it is flooded
    to_tunnel = Match((("eth_dst", host.mac), ("metadata", (at.vni, CLASS_MASK))))
    # Split horizon: from one tunnel to a host behind another is never ours to carry.
    hairpin = Match((("eth_dst", host.mac), ("metadata", (at.vni | FROM_TUNNEL, CLASS_MASK))))
    return [
        Flow("eth_dst", PRIORITY_SEGMENT, to_tunnel, learned, (exit.action,)),
        Flow("eth_dst", PRIORITY_SEGMENT, hairpin, learned),
    ]


def _hosts(fabric: Fabric) -> dict[tuple[str, str], set[str]]:
    """The MACs on access ports, by (site, segment)."""
    out: dict[tuple[str, str], set[str]] = {}
    for switch in fabric.switches.values():
        for port in switch.ports:
            if port.kind == "access":
                out.setdefault((switch.site, port.segment), set()).update(port.macs)
    return out


def _unicast(
    vni: int,
    ports: list[FabricPort],
    ofports: Mapping[str, int],
    exits: list[_Exit],
    hosts: Mapping[tuple[str, str], set[str]],
) -> Iterator[Flow]:
    local = {mac for p in ports if p.kind == "access" for mac in p.macs}
    for port in ports:
        if port.kind == "access":
            for mac in sorted(port.macs):
                match = Match.of(metadata=(vni, SEGMENT_MASK), eth_dst=mac)
                yield Flow(
                    "eth_dst", PRIORITY_SEGMENT, match, cookie(vni), (Output(ofports[port.name]),)
                )
    for exit in exits:
        # MACs behind a peer: listed on its tunnel ports, plus the peer site's hosts.
        remote: set[str] = set()
        for p in exit.ports:
            remote |= set(p.macs) | (hosts.get((p.peer, p.segment), set()) if p.peer else set())
        for mac in sorted(remote - local):
            to_tunnel = Match.of(metadata=(vni, CLASS_MASK), eth_dst=mac)
            yield Flow("eth_dst", PRIORITY_SEGMENT, to_tunnel, cookie(vni), (exit.action,))
            # Split horizon: from one tunnel to a host behind another is never ours to carry.
            hairpin = Match.of(metadata=(vni | FROM_TUNNEL, CLASS_MASK), eth_dst=mac)
            yield Flow("eth_dst", PRIORITY_SEGMENT, hairpin, cookie(vni))


def _flood_groups(
    vni: int, ports: list[FabricPort], ofports: Mapping[str, int], exits: list[_Exit]
) -> tuple[Group, Group]:
    # OpenFlow never outputs a frame back to its ingress port unless told to (OFPP_IN_PORT,
    # section 7.2.1), so one group serves every access port of the segment. A peer with
    # several paths gets one copy, through its fast-failover group.
    access = tuple(
        (Output(n),) for n in sorted(ofports[p.name] for p in ports if p.kind == "access")
    )
    tunnels = tuple((e.action,) for e in sorted(exits, key=_exit_order))
    return (
        Group(flood_group_id(vni, False), "all", access + tunnels),
        Group(flood_group_id(vni, True), "all", access),
    )


def _exit_order(exit: _Exit) -> tuple[int, int]:
    return (1, exit.action.group_id) if isinstance(exit.action, ToGroup) else (0, exit.action.port)


def _flood(vni: int, groups: tuple[Group, ...]) -> Iterator[Flow]:
    for group in groups:
        from_tunnel = bool(group.group_id & 1)
        tag = vni | (FROM_TUNNEL if from_tunnel else 0)
        match = Match.of(metadata=(tag, CLASS_MASK))
        yield Flow("flood", PRIORITY_SEGMENT, match, cookie(vni), (ToGroup(group.group_id),))


# -- messages ----------------------------------------------------------------------------


def program(plan: SwitchPlan) -> list[Message]:
    """A freshly connected switch: wipe what it holds, then install the whole plan."""
    return [ClearFlows(), ClearGroups(), Barrier(), *diff(SwitchPlan(plan.site), plan)]


def diff(old: SwitchPlan, new: SwitchPlan) -> list[Message]:
    """The fewest messages that turn a switch holding `old` into one holding `new`.

    Groups exist before flows point at them; new flows go in before stale ones go out, so
    a re-plan never opens a gap; groups go last, once no flow refers to them.
    """
    old_groups = {g.group_id: g for g in old.groups}
    new_groups = {g.group_id: g for g in new.groups}
    out: list[Message] = []
    # Fast-failover groups first: flood groups chain to them (and go first when deleted).
    for gid, group in sorted(new_groups.items(), key=lambda kv: (kv[1].type != "ff", kv[0])):
        if gid not in old_groups:
            out.append(AddGroup(group))
        elif old_groups[gid] != group:
            out.append(ModifyGroup(group))
    if out:
        out.append(Barrier())
    old_flows, new_keys = set(old.flows), {f.key for f in new.flows}
    out += [AddFlow(f) for f in new.flows if f not in old_flows]
    out += [DeleteFlow(f) for f in old.flows if f.key not in new_keys]
    stale = [
        DeleteGroup(gid)
        for gid, _ in sorted(old_groups.items(), key=lambda kv: (kv[1].type == "ff", kv[0]))
        if gid not in new_groups
    ]
    if stale:
        out += [Barrier(), *stale]
    return out
