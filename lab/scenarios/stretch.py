"""`stretch`: L2 segments stretched across sites carry ping and TCP between their hosts,
and hosts of different segments never reach each other.

Hosts of two segments sit in different subnets, so a plain ping between them fails for want
of a route and proves nothing. Before probing isolation the scenario gives both hosts an
on-link route to the other's subnet: their ARP requests then go out on their own segment,
and only the switches (programmed by our controller) stand between them.

L3 segments are not part of it yet: the bridge routes announced prefixes, but the lab builds
no hosts for them."""

from __future__ import annotations

import itertools

from lab import netns, traffic
from lab.plan import HostPlan, LabPlan
from lab.scenarios import Check, Progress, Scenario

PINGS = 5
TCP_SECONDS = 1


def _cross_site(plan: LabPlan) -> list[tuple[HostPlan, HostPlan]]:
    return [
        (a, b)
        for a, b in itertools.combinations(plan.hosts, 2)
        if a.segment == b.segment and a.site != b.site
    ]


def _other_segment(plan: LabPlan) -> list[tuple[HostPlan, HostPlan]]:
    return [(a, b) for a, b in itertools.combinations(plan.hosts, 2) if a.segment != b.segment]


def _on_link(host: HostPlan, other: HostPlan) -> None:
    netns.run(host.netns, ["ip", "route", "replace", str(other.address.network), "dev", "eth0"])


def act(plan: LabPlan, progress: Progress) -> list[Check]:
    checks = []
    for a, b in _cross_site(plan):
        progress(f"stretch: ping and TCP {a.label} -> {b.label}")
        p = traffic.ping(a.netns, b.address.ip, a.label, b.label, count=PINGS)
        checks.append(
            Check(
                f"ping {a.label} -> {b.label}",
                p.ok,
                f"{p.received}/{p.sent} replies"
                + (f", avg {p.rtt_avg_ms:.2f} ms" if p.rtt_avg_ms is not None else ""),
                {"sent": p.sent, "received": p.received, "rtt_avg_ms": p.rtt_avg_ms},
            )
        )
        try:
            t = traffic.iperf3(b.netns, b.address.ip, a.netns, a.label, b.label, TCP_SECONDS)
        except netns.LabCommandError as exc:
            checks.append(Check(f"TCP {a.label} -> {b.label}", False, str(exc)))
        else:
            checks.append(
                Check(
                    f"TCP {a.label} -> {b.label}",
                    t.bits_per_second > 0,
                    f"{t.bits_per_second / 1e6:.0f} Mbit/s, {t.retransmits} retransmits "
                    f"(iperf3, {TCP_SECONDS} s)",
                    {"bits_per_second": t.bits_per_second, "retransmits": t.retransmits},
                )
            )
    for a, b in _other_segment(plan):
        progress(f"stretch: isolation {a.label} -x- {b.label}")
        _on_link(a, b)
        _on_link(b, a)
        p = traffic.ping(a.netns, b.address.ip, a.label, b.label, count=PINGS)
        where = "same site" if a.site == b.site else "across sites"
        checks.append(
            Check(
                f"isolation {a.label} -x- {b.label}",
                p.received == 0,
                f"{p.received}/{p.sent} replies with on-link routes both ways ({where})",
                {"sent": p.sent, "received": p.received},
            )
        )
    return checks


SCENARIO = Scenario(
    name="stretch",
    promise=(
        "L2 segments stretched across sites carry ping and TCP; hosts of different "
        "segments never reach each other"
    ),
    config_file="stretch.yaml",
    act=act,
)
