"""What the read-only API shows (`controller.api`): pure functions of a snapshot of the app.

Each view takes the `State` the app copied in its own thread and the query, and returns
plain JSON data; a KeyError names what was not found (the API answers 404).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.learning import Host
from controller.neighbours import Neighbour
from controller.openflow import Flow, Match
from controller.pipeline import PIPELINE, acl_rule_of
from overcast.config import OvercastConfig
from overcast.fabric import Fabric


@dataclass(frozen=True)
class SwitchState:
    site: str
    dpid: int
    address: str
    connected_s: float
    programmed: bool
    ofports: dict[str, int]
    unresolved: tuple[str, ...]
    flows: tuple[Flow, ...]
    packets: dict[tuple[str, int, Match], int]
    counted_at: float | None


@dataclass(frozen=True)
class State:
    config: OvercastConfig
    fabric: Fabric
    switches: list[SwitchState]
    strangers: list[tuple[int, str]]
    hosts: list[Host]
    held: list[tuple[str, str]]
    now: float
    addresses: list[Neighbour] = field(default_factory=list)


def switches(state: State, query: dict[str, str]) -> list[dict[str, Any]]:
    connected = {s.site: s for s in state.switches}
    out: list[dict[str, Any]] = []
    for site, switch in state.fabric.switches.items():
        sw = connected.get(site)
        out.append(
            {
                "site": site,
                "dpid": f"{switch.dpid:#x}",
                "bridge": switch.bridge,
                "connected": sw is not None,
                "address": sw.address if sw else None,
                "connected_seconds": round(sw.connected_s, 1) if sw else None,
                "programmed": sw.programmed if sw else False,
                "ports": sw.ofports if sw else {},
                "missing_ports": list(sw.unresolved) if sw else [p.name for p in switch.ports],
                "learning_held_ports": [p for s, p in state.held if s == site],
            }
        )
    out += [
        {"site": None, "dpid": f"{dpid:#x}", "connected": True, "address": address}
        for dpid, address in state.strangers
    ]
    return out


def segments(state: State, query: dict[str, str]) -> list[dict[str, Any]]:
    learned = Counter(h.segment for h in state.hosts)
    acls = state.config.controller.acls
    return [
        {
            "name": name,
            "vni": seg.vni,
            "vlan": seg.vlan,
            "sites": list(seg.sites),
            "learned_macs": learned[name],
            "acl_default": acls[name].default if name in acls else None,
            "acl_rules": len(acls[name].rules) if name in acls else 0,
        }
        for name, seg in state.config.l2_segments().items()
    ]


def macs(state: State, query: dict[str, str]) -> list[dict[str, Any]]:
    """Every host MAC, where it is, and the addresses the ARP/ND proxy answers for."""
    ips: dict[tuple[str, str], list[str]] = {}
    for n in state.addresses:
        ips.setdefault((n.segment, n.mac), []).append(n.ip)
    out = [
        {
            "segment": h.segment,
            "mac": h.mac,
            "site": h.site,
            "port": h.port,
            "kind": "learned",
            "age_seconds": round(state.now - h.since, 1),
            "ips": sorted(ips.get((h.segment, h.mac), [])),
        }
        for h in sorted(state.hosts, key=lambda h: (h.segment, h.mac))
    ]
    for switch in state.fabric.switches.values():
        for port in switch.ports:
            out += [
                {
                    "segment": port.segment,
                    "mac": mac,
                    "site": switch.site,
                    "port": port.name,
                    "kind": "configured",
                    "age_seconds": None,
                    "ips": sorted(ips.get((port.segment, mac), [])),
                }
                for mac in port.macs
            ]
    return out


def flows(state: State, query: dict[str, str]) -> dict[str, Any]:
    site = query.get("site")
    if site is not None:
        sw = next((s for s in state.switches if s.site == site), None)
        if sw is None:
            raise KeyError(f"no connected switch for site {site!r}")
        return {
            "site": site,
            "flows": [
                {"flow": str(f), "packets": sw.packets.get(f.key)}
                for f in sorted(sw.flows, key=lambda f: (f.table, -f.priority, str(f.match)))
            ],
        }
    return {
        s.site: {t.name: sum(1 for f in s.flows if f.table == t.name) for t in PIPELINE}
        for s in state.switches
    }


def acls(state: State, query: dict[str, str]) -> dict[str, Any]:
    """Per segment, each rule and its default with the packets they matched at each site
    (flow statistics from the last audit)."""
    out: dict[str, Any] = {}
    for name, acl in state.config.controller.acls.items():
        rows: list[dict[str, Any]] = [
            {"rule": i, "action": r.action, "match": r.model_dump(exclude_none=True), "packets": {}}
            for i, r in enumerate(acl.rules)
        ]
        rows.append({"rule": "default", "action": acl.default, "packets": {}})
        vni = state.config.l2_segments()[name].vni
        for sw in state.switches:
            for flow in sw.flows:
                index = acl_rule_of(flow, vni)
                if index is not None:
                    row = rows[-1] if index == "default" else rows[index]
                    counts = row["packets"]
                    counts[sw.site] = counts.get(sw.site, 0) + sw.packets.get(flow.key, 0)
        out[name] = {"default": acl.default, "rules": rows}
    counted = [s.counted_at for s in state.switches if s.counted_at is not None]
    return {"segments": out, "counted_at": min(counted) if counted else None}


VIEWS: dict[str, Callable[[State, dict[str, str]], Any]] = {
    "switches": switches,
    "segments": segments,
    "macs": macs,
    "flows": flows,
    "acls": acls,
}
