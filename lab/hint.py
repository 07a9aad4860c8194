"""The first steps `overcast lab up` suggests: a ping that works (two hosts of one segment,
at different sites when there are) and a look at isolation (hosts of two segments). Pure:
the plan in, lines out."""

from __future__ import annotations

import itertools

from lab.plan import HostPlan, LabPlan


def same_segment_pair(plan: LabPlan) -> tuple[HostPlan, HostPlan] | None:
    """Two hosts of one segment, preferring two sites (the pair that crosses a tunnel)."""
    pairs = [(a, b) for a, b in itertools.combinations(plan.hosts, 2) if a.segment == b.segment]
    return next((p for p in pairs if p[0].site != p[1].site), next(iter(pairs), None))


def two_segment_pair(plan: LabPlan) -> tuple[HostPlan, HostPlan] | None:
    """Hosts of two different segments, at different sites when there are."""
    pairs = [(a, b) for a, b in itertools.combinations(plan.hosts, 2) if a.segment != b.segment]
    return next((p for p in pairs if p[0].site != p[1].site), next(iter(pairs), None))


def first_steps(plan: LabPlan) -> list[str]:
    lines = []
    same = same_segment_pair(plan)
    if same:
        a, b = same
        lines.append(
            f"try: ip netns exec {a.netns} ping -c 3 {b.address.ip}"
            f"   ({a.label} -> {b.label}, segment {a.segment})"
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
    return lines
