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
    try_line, _ = hint.first_steps(plan)
    assert try_line.startswith(f"try: ip netns exec {a.netns} ping -c 3 {b.address.ip} ")


def test_isolation_names_hosts_of_two_segments() -> None:
    plan = plan_of(STRETCH)
    pair = hint.two_segment_pair(plan)
    assert pair is not None
    a, b = pair
    assert a.segment != b.segment and a.site != b.site
    isolation = hint.first_steps(plan)[1]
    assert f"ip netns exec {a.netns} ping -c 3 {b.address.ip}" in isolation
    assert "overcast lab scenario stretch" in isolation


def test_one_segment_gets_no_isolation_hint_and_one_host_no_ping() -> None:
    one_segment = STRETCH.replace(
        "  guest:   {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}\n", ""
    )
    lines = hint.first_steps(plan_of(one_segment))
    assert len(lines) == 1 and lines[0].startswith("try:")
    plan = plan_of(one_segment)
    assert hint.first_steps(replace(plan, hosts=plan.hosts[:1])) == []
