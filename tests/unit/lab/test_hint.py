from dataclasses import replace
from pathlib import Path

from lab import hint
from lab.plan import LabPlan
from overcast.config import loads
from tests.unit.lab.test_plan import make_plan

STRETCH = (Path(__file__).parents[3] / "lab" / "scenarios" / "stretch.yaml").read_text()


def plan_of(text: str) -> LabPlan:
    return make_plan(loads(text))


def test_the_suggested_ping_stays_in_one_segment_and_crosses_sites() -> None:
    plan = plan_of(STRETCH)
    # The first and last hosts are of different segments: the old hint pinged across them.
    assert plan.hosts[0].segment != plan.hosts[-1].segment
    pair = hint.same_segment_pair(plan)
    assert pair is not None
    a, b = pair
    assert a.segment == b.segment and a.site != b.site
    try_line, *_ = hint.first_steps(plan)
    assert try_line.startswith(f"try: ip netns exec {a.netns} ping -c 3 {b.address.ip} ")


def test_isolation_names_hosts_of_two_segments() -> None:
    plan = plan_of(STRETCH)
    pair = hint.two_segment_pair(plan)
    assert pair is not None
    a, b = pair
    assert a.segment != b.segment and a.site != b.site
    isolation = hint.first_steps(plan)[-1]
    assert f"ip netns exec {a.netns} ping -c 3 {b.address.ip}" in isolation
    assert "overcast lab scenario stretch" in isolation


def test_a_routed_segment_gets_a_ping_across_sites_too() -> None:
    plan = plan_of(STRETCH)
    pair = hint.routed_pair(plan)
    assert pair is not None
    x, y = pair
    assert x.segment == y.segment == "apps" and x.site != y.site
    _, routed, _ = hint.first_steps(plan)
    assert routed.startswith(f"try: ip netns exec {x.netns} ping -c 3 {y.address.ip} ")
    assert "routed segment apps" in routed


ONE_L2 = STRETCH.replace("  guest:   {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}\n", "")


def test_one_l2_segment_and_a_routed_one_isolation_from_the_routed_host() -> None:
    plan = plan_of(ONE_L2)
    lines = hint.first_steps(plan)
    assert [line.split(":")[0] for line in lines] == ["try", "try", "isolation"]
    x = plan.routed_hosts[0]
    b = next(h for h in plan.hosts if h.site != x.site)
    assert f"`ip netns exec {x.netns} ping -c 3 {b.address.ip}` fails by design" in lines[2]


def test_one_segment_gets_no_isolation_hint_and_one_host_no_ping() -> None:
    plan = plan_of(ONE_L2)
    plan = replace(plan, routed_hosts=())
    lines = hint.first_steps(plan)
    assert len(lines) == 1 and lines[0].startswith("try:")
    assert hint.first_steps(replace(plan, hosts=plan.hosts[:1])) == []
