"""The first steps `overcast lab up` suggests: pings that work (two hosts of one segment,
at different sites when there are; two routed hosts of one L3 segment) and a look at
isolation (hosts of two segments). Pure: the plan in, lines out."""

from __future__ import annotations

import itertools

from lab.plan import HostPlan, LabPlan, RoutedHost


def same_segment_pair(plan: LabPlan) -> tuple[HostPlan, HostPlan] | None:
    """Two hosts of one segment, preferring two sites (the pair that crosses a tunnel)."""
    pairs = [(a, b) for a, b in itertools.combinations(plan.hosts, 2) if a.segment == b.segment]
    return next((p for p in pairs if p[0].site != p[1].site), next(iter(pairs), None))


def two_segment_pair(plan: LabPlan) -> tuple[HostPlan, HostPlan] | None:
    """Hosts of two different segments, at different sites when there are."""
    pairs = [(a, b) for a, b in itertools.combinations(plan.hosts, 2) if a.segment != b.segment]
    return next((p for p in pairs if p[0].site != p[1].site), next(iter(pairs), None))


def routed_pair(plan: LabPlan) -> tuple[RoutedHost, RoutedHost] | None:
    """Two routed hosts of one L3 segment (each at its own site: one per site)."""
    pairs = itertools.combinations(plan.routed_hosts, 2)
    return next(((a, b) for a, b in pairs if a.segment == b.segment), None)


def first_steps(plan: LabPlan) -> list[str]:
    lines = []
    same = same_segment_pair(plan)
    if same:
        a, b = same
        lines.append(
            f"try: ip netns exec {a.netns} ping -c 3 {b.address.ip}"
            f"   ({a.label} -> {b.label}, segment {a.segment})"
        )
    routed = routed_pair(plan)
    if routed:
        x, y = routed
        lines.append(
            f"try: ip netns exec {x.netns} ping -c 3 {y.address.ip}"
            f"   ({x.label} -> {y.label}, routed segment {x.segment}, through WireGuard)"
        )
    other = two_segment_pair(plan)
    if other:
        a, b = other
        lines.append(
            f"isolation: {a.label} (segment {a.segment}) and {b.label} (segment {b.segment}) "
            f"share no segment, so `ip netns exec {a.netns} ping -c 3 {b.address.ip}` fails "
            "by design; `overcast lab scenario stretch` shows the switches keep segments apart "
            "even when hosts have on-link routes to each other"
        )
    elif plan.routed_hosts and plan.hosts:
        x = plan.routed_hosts[0]
        b = next((h for h in plan.hosts if h.site != x.site), plan.hosts[0])
        lines.append(
            f"isolation: {x.label} (routed segment {x.segment}) and {b.label} (segment "
            f"{b.segment}) share no segment, so `ip netns exec {x.netns} ping -c 3 "
            f"{b.address.ip}` fails by design: no site routes a routed segment's traffic "
            "into an L2 segment"
        )
    return lines
