"""The steps of the demo's story after the build, in order. Each acts on the built lab and
returns checks with their figures, like a scenario's act (lab.scenarios). The failover,
hijack and SSO steps are the scenarios of those names, run on the demo's own lab; one whose
scenario is not built is not run, and the demo says so."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from lab import scenarios
from lab.plan import HostPlan, LabPlan
from lab.scenarios import Check, Progress
from lab.scenarios.stretch import ping_check, tcp_check
from overcast.config import OvercastConfig

Act = Callable[[OvercastConfig, LabPlan, Progress], list[Check]]


@dataclass(frozen=True)
class Step:
    name: str
    title: str  # what it shows, in one line
    act: Act | None
    missing: str = ""  # when act is None: the part that is not built yet


def cross_site_pairs(plan: LabPlan) -> list[tuple[HostPlan, HostPlan]]:
    """Every pair of hosts on one segment at different sites."""
    return [
        (a, b)
        for a, b in itertools.combinations(plan.hosts, 2)
        if a.segment == b.segment and a.site != b.site
    ]


def steps(seconds: int) -> list[Step]:
    built = scenarios.registry()
    return [
        Step(
            "traffic",
            "ping and TCP between hosts at every pair of sites",
            partial(traffic, seconds=seconds),
        ),
        _scenario(
            built,
            "failover",
            "the preferred carrier's network fails under a 1 ms probe stream and a TCP "
            "transfer, then comes back",
        ),
        _scenario(
            built,
            "hijack",
            "an attacker AS announces a more-specific of our prefix; the guard alerts",
        ),
        _scenario(
            built,
            "sso",
            "a user signs in through the SSO gateway; one outside the policy is refused",
        ),
    ]


def _scenario(
    built: dict[str, scenarios.Scenario | scenarios.SitelessScenario], name: str, title: str
) -> Step:
    """The scenario `name` as a step on the demo's lab (one without sites of its own gets
    the lab's state dir, where it records what it makes, so the teardown removes it)."""
    scenario = built.get(name)
    if isinstance(scenario, scenarios.SitelessScenario):
        siteless = scenario.act
        return Step(name, title, lambda config, plan, progress: siteless(plan.state_dir, progress))
    if scenario is not None:
        return Step(name, title, scenario.act)
    return Step(name, title, None, f"lab/scenarios/{name}.py (issue 14) is not built yet")


def traffic(
    config: OvercastConfig, plan: LabPlan, progress: Progress, seconds: int = 2
) -> list[Check]:
    """Ping, then one iperf3 TCP run, between the hosts of each pair of sites."""
    pairs = cross_site_pairs(plan)
    checks = []
    for a, b in pairs:
        progress(f"traffic: ping {a.label} -> {b.label}")
        checks.append(ping_check(a.netns, a.label, b.label, b.address.ip))
    for a, b in pairs:
        progress(f"traffic: TCP {a.label} -> {b.label} for {seconds} s")
        checks.append(tcp_check(a.netns, a.label, b.netns, b.label, b.address.ip, seconds))
    return checks
