"""The demo: traffic between hosts at different sites of a built lab, through each site's
OVS (programmed only by our controller), VXLAN and WireGuard."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lab import traffic
from lab.plan import HostPlan, LabPlan
from overcast.config import OvercastConfig, loads

BUILT_IN = "demo.yaml"


def built_in() -> tuple[OvercastConfig, str]:
    """The built-in demo config (shipped as package data) and its text."""
    text = resources.files("lab").joinpath(BUILT_IN).read_text(encoding="utf-8")
    return loads(text, source=f"built-in {BUILT_IN}"), text


def cross_site_pairs(plan: LabPlan) -> list[tuple[HostPlan, HostPlan]]:
    """Every pair of hosts on one segment at different sites."""
    return [
        (a, b)
        for a, b in itertools.combinations(plan.hosts, 2)
        if a.segment == b.segment and a.site != b.site
    ]


@dataclass(frozen=True)
class Report:
    lab_id: str
    pings: tuple[traffic.PingResult, ...]
    throughput: tuple[traffic.Throughput, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pings) and all(t.bits_per_second > 0 for t in self.throughput)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "ok": self.ok,
            "pings": [p.as_dict() for p in self.pings],
            "throughput": [t.as_dict() for t in self.throughput],
        }


def run(plan: LabPlan, seconds: int = 3) -> Report:
    """Ping every cross-site pair, then one iperf3 TCP run per pair."""
    pairs = cross_site_pairs(plan)
    pings = tuple(
        traffic.ping(a.netns, b.address.ip, a.label, f"{b.label} ({b.address.ip})")
        for a, b in pairs
    )
    throughput = tuple(
        traffic.iperf3(b.netns, b.address.ip, a.netns, a.label, b.label, seconds) for a, b in pairs
    )
    return Report(plan.lab_id, pings, throughput)
