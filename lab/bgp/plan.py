"""The desired state of a BGP lab: a pure function from a topology (who is whose provider,
who originates what) and a lab id to every namespace, address, session and file.

Every router sits on one peering LAN (a Linux bridge in its own namespace) and has an eBGP
session with each of its providers and customers over it. Routers follow the Gao-Rexford
export rules (Gao and Rexford, "Stable Internet routing without global coordination",
2001): everything goes to customers, only their own and their customers' routes go to
providers. A router that breaks the rule on purpose (`leaks_to`) is a route leak, RFC 7908
section 3.1 type 1. The guard peers with the routers marked `guard`, which send it their
whole table, as a route collector's peers do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from lab import names

# What the neighbour is to the router holding the session.
Relationship = Literal["customer", "provider", "collector"]

LAN = ipaddress.IPv4Network("192.0.2.0/24")  # the peering LAN (RFC 5737 documentation range)
GUARD_ADDRESS = LAN[100]
GUARD_ASN = 65010  # private (RFC 6996): the guard announces nothing
GUARD_STATUS_PORT = 8179  # the status page, on the guard namespace's loopback
BGP_DIR = "bgp"  # in the lab's state dir: one folder per router and one for the guard
GUARD_DIR = "guard"
GUARD_CONFIG = "overcast.yaml"
GUARD_ASREL = "as-rel.txt"
GUARD_NOTICES = "guard.jsonl"  # the guard's JSON-lines sink: one notice per line
GUARD_STATE = "guard-state.sqlite"


@dataclass(frozen=True)
class AsSpec:
    """One AS of a topology, named by its role ("ours", "attacker")."""

    name: str
    asn: int
    originates: tuple[str, ...] = ()  # announced from the start
    held: tuple[str, ...] = ()  # configured but announced only when a scenario says so
    providers: tuple[str, ...] = ()  # names of its providers (it is their customer)
    guard: bool = False  # sends its whole table to the guard
    # Providers it also sends its providers' routes to once a scenario turns the leak on.
    leaks_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    ases: tuple[AsSpec, ...]
    ours: str  # the AS whose originated prefixes the guard monitors

    def spec(self, name: str) -> AsSpec:
        return next(a for a in self.ases if a.name == name)


@dataclass(frozen=True)
class Session:
    name: str  # bird protocol name
    address: ipaddress.IPv4Address
    asn: int
    relationship: Relationship
    leak: bool = False  # a provider this router leaks to, once the leak is on


@dataclass(frozen=True)
class RouterPlan:
    name: str
    asn: int
    netns: str
    address: ipaddress.IPv4Interface
    lan_port: str  # its port on the peering LAN's bridge
    dir: Path  # bird.conf, its control socket, pidfile and log
    originates: tuple[ipaddress.IPv4Network, ...]
    held: tuple[ipaddress.IPv4Network, ...]
    sessions: tuple[Session, ...]

    @property
    def label(self) -> str:
        return f"{self.name} (AS{self.asn})"

    @property
    def control_socket(self) -> Path:
        return self.dir / "bird.ctl"

    @property
    def config(self) -> Path:
        return self.dir / "bird.conf"

    @property
    def pidfile(self) -> Path:
        return self.dir / "bird.pid"


@dataclass(frozen=True)
class GuardPlan:
    netns: str
    address: ipaddress.IPv4Interface
    asn: int
    dir: Path
    lan_port: str
    neighbours: tuple[RouterPlan, ...]  # the routers it peers with

    @property
    def config(self) -> Path:
        return self.dir / GUARD_CONFIG

    @property
    def notices(self) -> Path:
        return self.dir / GUARD_NOTICES

    @property
    def pidfile(self) -> Path:
        return self.dir / "guard.pid"

    @property
    def log(self) -> Path:
        return self.dir / "guard.log"


@dataclass(frozen=True)
class BgpLabPlan:
    lab_id: str
    state_dir: Path
    lan_netns: str
    routers: tuple[RouterPlan, ...]
    guard: GuardPlan
    monitored: dict[ipaddress.IPv4Network, int]  # our prefixes and their origin AS
    # Each router's prefixes once converged without leaks or held routes (valley-free).
    expected: dict[str, frozenset[ipaddress.IPv4Network]]

    def router(self, name: str) -> RouterPlan:
        return next(r for r in self.routers if r.name == name)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.lan_netns, self.guard.netns, *(r.netns for r in self.routers))

    def guard_routes(self) -> int:
        """Routes the guard holds once converged: each guard peer's whole table."""
        return sum(len(self.expected[r.name]) for r in self.guard.neighbours)


class TopologyError(ValueError):
    """A topology that names an AS it does not define, or repeats one."""


def _sessions(topology: Topology, spec: AsSpec, addresses: dict[str, Any]) -> list[Session]:
    out = []
    for other in topology.ases:
        if other.name in spec.providers:
            relationship: Relationship = "provider"
        elif spec.name in other.providers:
            relationship = "customer"
        else:
            continue
        out.append(
            Session(
                other.name.replace("-", "_"),  # bird protocol names are identifiers
                addresses[other.name].ip,
                other.asn,
                relationship,
                leak=other.name in spec.leaks_to,
            )
        )
    if spec.guard:
        out.append(Session("guard", GUARD_ADDRESS, GUARD_ASN, "collector"))
    return out


def _check(topology: Topology) -> None:
    known = [a.name for a in topology.ases]
    if len(set(known)) != len(known) or len({a.asn for a in topology.ases}) != len(known):
        raise TopologyError(f"every AS needs its own name and ASN: {known}")
    for spec in topology.ases:
        for other in (*spec.providers, *spec.leaks_to):
            if other not in known or other == spec.name:
                raise TopologyError(f"{spec.name}: no other AS {other!r} in the topology")
        stray = set(spec.leaks_to) - set(spec.providers)
        if stray:
            raise TopologyError(f"{spec.name} leaks to {sorted(stray)}, which are not providers")
    if topology.ours not in known:
        raise TopologyError(f"no AS {topology.ours!r} in the topology")


def expected_routes(topology: Topology) -> dict[str, frozenset[ipaddress.IPv4Network]]:
    """The prefixes each AS holds when every AS follows the export rules: a route climbs
    from its origin through providers (customer routes go up), then descends to customers
    (everything goes down), never up again."""
    providers = {a.name: set(a.providers) for a in topology.ases}
    customers = {
        a.name: {c.name for c in topology.ases if a.name in c.providers} for a in topology.ases
    }

    def closure(start: str, step: dict[str, set[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in step[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    held: dict[str, set[ipaddress.IPv4Network]] = {a.name: set() for a in topology.ases}
    for spec in topology.ases:
        prefixes = {ipaddress.IPv4Network(p) for p in spec.originates}
        for up in closure(spec.name, providers):
            for down in closure(up, customers):
                held[down] |= prefixes
    return {name: frozenset(p) for name, p in held.items()}


def plan_bgp_lab(topology: Topology, lab_id: str, state_root: Path) -> BgpLabPlan:
    names.check_lab_id(lab_id)
    _check(topology)
    state_dir = state_root / lab_id
    addresses = {
        a.name: ipaddress.IPv4Interface(f"{LAN[i + 1]}/{LAN.prefixlen}")
        for i, a in enumerate(topology.ases)
    }
    routers = tuple(
        RouterPlan(
            name=a.name,
            asn=a.asn,
            netns=names.router_netns(lab_id, a.asn),
            address=addresses[a.name],
            lan_port=names.check_ifname(f"to-as{a.asn}"),
            dir=state_dir / BGP_DIR / f"as{a.asn}",
            originates=tuple(ipaddress.IPv4Network(p) for p in a.originates),
            held=tuple(ipaddress.IPv4Network(p) for p in a.held),
            sessions=tuple(_sessions(topology, a, addresses)),
        )
        for a in topology.ases
    )
    ours = topology.spec(topology.ours)
    return BgpLabPlan(
        lab_id=lab_id,
        state_dir=state_dir,
        lan_netns=names.peering_netns(lab_id),
        routers=routers,
        guard=GuardPlan(
            netns=names.guard_netns(lab_id),
            address=ipaddress.IPv4Interface(f"{GUARD_ADDRESS}/{LAN.prefixlen}"),
            asn=GUARD_ASN,
            dir=state_dir / BGP_DIR / GUARD_DIR,
            lan_port="to-guard",
            neighbours=tuple(r for r, a in zip(routers, topology.ases, strict=True) if a.guard),
        ),
        monitored={ipaddress.IPv4Network(p): ours.asn for p in ours.originates},
        expected=expected_routes(topology),
    )


def asrel_text(topology: Topology) -> str:
    """The topology's AS relationships as a CAIDA serial-1 file (`provider|customer|-1`),
    what the guard's leak detection reads (guard.asrel_file)."""
    lines = ["# provider|customer|-1, from the lab's topology (CAIDA serial-1 format)"]
    for spec in topology.ases:
        lines += [f"{topology.spec(p).asn}|{spec.asn}|-1" for p in spec.providers]
    return "\n".join(lines) + "\n"


def guard_config(plan: BgpLabPlan, topology: Topology) -> str:
    """The overcast.yaml `overcast guard watch` runs with: our prefixes, their origin and
    upstreams, the AS relationships, a JSON-lines sink, and a passive BGP session for each
    guard peer (the routers dial it)."""
    ours = topology.spec(topology.ours)
    upstreams = [topology.spec(p).asn for p in ours.providers]
    guard: dict[str, Any] = {
        "prefixes": {
            str(p): {"origins": [asn], **({"upstreams": upstreams} if upstreams else {})}
            for p, asn in plan.monitored.items()
        },
        "asrel_file": GUARD_ASREL,
        "state_file": GUARD_STATE,
        "notify": {"repeat_every": 0},  # one open and one close per event
        "sinks": {"noc": {"type": "jsonl", "path": GUARD_NOTICES}},
        "feeds": {
            "bgp": {
                "local_asn": plan.guard.asn,
                "router_id": str(plan.guard.address.ip),
                "listen": str(plan.guard.address.ip),
                "neighbours": {str(r.address.ip): r.asn for r in plan.guard.neighbours},
                "hold_time": 9,
            }
        },
    }
    return yaml.safe_dump({"sites": {}, "guard": guard}, sort_keys=False)
