"""`stretch`: L2 segments stretched across sites carry ping and TCP between their hosts,
hosts of different segments never reach each other, and the routed hosts on the LANs
behind an L3 segment's announced prefixes (the lab builds one per site) reach each other
across sites (routed into WireGuard) but not the L2 segments' hosts.

Hosts of two segments sit in different subnets, so a plain ping between them fails for want
of a route and proves nothing. Before probing isolation the scenario gives both hosts an
on-link route to the other's subnet: their ARP requests then go out on their own segment,
and only the switches (programmed by our controller) stand between them. (On one shared L2
the same probe gets its replies: Linux answers ARP for any sender.)"""

from __future__ import annotations

import itertools

from lab import netns, traffic
from lab.plan import HostPlan, LabPlan
from lab.scenarios import Check, Progress, Scenario
from overcast.config import OvercastConfig
from overcast.model import IPAddress

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


def ping_check(a_netns: str, a: str, b: str, target: IPAddress) -> Check:
    p = traffic.ping(a_netns, target, a, b, count=PINGS)
    return Check(
        f"ping {a} -> {b}",
        p.ok,
        f"{p.received}/{p.sent} replies"
        + (f", avg {p.rtt_avg_ms:.2f} ms" if p.rtt_avg_ms is not None else ""),
        {"sent": p.sent, "received": p.received, "rtt_avg_ms": p.rtt_avg_ms},
    )


def tcp_check(
    a_netns: str, a: str, b_netns: str, b: str, target: IPAddress, seconds: int = TCP_SECONDS
) -> Check:
    try:
        t = traffic.iperf3(b_netns, target, a_netns, a, b, seconds)
    except netns.LabCommandError as exc:
        return Check(f"TCP {a} -> {b}", False, str(exc))
    return Check(
        f"TCP {a} -> {b}",
        t.bits_per_second > 0,
        f"{t.bits_per_second / 1e6:.0f} Mbit/s, {t.retransmits} retransmits (iperf3, {seconds} s)",
        {"bits_per_second": t.bits_per_second, "retransmits": t.retransmits},
    )


def act(config: OvercastConfig, plan: LabPlan, progress: Progress) -> list[Check]:
    checks = []
    for a, b in _cross_site(plan):
        progress(f"stretch: ping and TCP {a.label} -> {b.label}")
        checks.append(ping_check(a.netns, a.label, b.label, b.address.ip))
        checks.append(tcp_check(a.netns, a.label, b.netns, b.label, b.address.ip))
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
    routed = plan.routed_hosts
    for x, y in itertools.permutations(routed, 2):
        if x.segment == y.segment and x.site != y.site:
            progress(f"stretch: routed ping and TCP {x.label} -> {y.label}")
            checks.append(ping_check(x.netns, x.label, y.label, y.address.ip))
            if y.address6 is not None and x.address6 is not None:
                checks.append(ping_check(x.netns, x.label, f"{y.label} over IPv6", y.address6.ip))
            checks.append(tcp_check(x.netns, x.label, y.netns, y.label, y.address.ip))
    # A routed host has a default route, yet no L2 segment's host is reachable from it.
    for x in routed[:1]:
        for host in (h for h in plan.hosts if h.site != x.site):
            p = traffic.ping(x.netns, host.address.ip, x.label, host.label, count=PINGS)
            checks.append(
                Check(
                    f"isolation {x.label} -x- {host.label}",
                    p.received == 0,
                    f"{p.received}/{p.sent} replies (routed host to an L2 segment's)",
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
