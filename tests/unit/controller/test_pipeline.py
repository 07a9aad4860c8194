"""The pure pipeline, checked by applying its messages to a model switch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.fakeoftable import FakeSwitch, Frame, OpenFlowError
from controller.openflow import AddFlow, Flow, Match, ToGroup
from controller.pipeline import (
    COOKIE_BASE,
    PIPELINE,
    FabricError,
    SwitchPlan,
    check_fabric,
    diff,
    plan_switch,
    program,
)
from overcast.config import loads
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from tests.unit.controller.fixtures import (
    BRANCH_FIN,
    BRANCH_HR,
    CLOUD_FIN,
    CONFIG,
    H1,
    H2,
    H3,
    HQ_PORTS,
    access,
    config,
    fabric,
    tunnel,
)

BROADCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN = "02:00:00:00:99:99"
H1_P, H2_P, H3_P = HQ_PORTS["h1"], HQ_PORTS["h2"], HQ_PORTS["h3"]
TO_BRANCH, TO_CLOUD, HR_TO_BRANCH = HQ_PORTS["vx100-1"], HQ_PORTS["vx100-2"], HQ_PORTS["vx200-1"]


SOURCE = {H1_P: H1, H2_P: H2, H3_P: H3}


def fwd(switch: FakeSwitch, in_port: int, eth_dst: str) -> frozenset[int]:
    """Where a frame goes, sent with the source MAC of the host on `in_port` (if any)."""
    return switch.forward(in_port, eth_dst, SOURCE.get(in_port, "02:00:00:00:77:77"))


def hq_plan(ports: dict[str, int] = HQ_PORTS) -> SwitchPlan:
    return plan_switch(config(), fabric(), "hq", ports)


@pytest.fixture
def hq() -> FakeSwitch:
    switch = FakeSwitch()
    switch.apply(program(hq_plan()))
    return switch


# -- flooding and isolation ---------------------------------------------------------------


def test_broadcast_from_access_reaches_segment_ports_and_every_tunnel(hq: FakeSwitch) -> None:
    assert fwd(hq, H1_P, BROADCAST) == {H2_P, TO_BRANCH, TO_CLOUD}


def test_segments_are_isolated(hq: FakeSwitch) -> None:
    assert fwd(hq, H3_P, BROADCAST) == {HR_TO_BRANCH}
    # hr's host is unknown inside finance: the frame floods finance, never reaches hr.
    assert H3_P not in fwd(hq, H1_P, H3)
    assert fwd(hq, HR_TO_BRANCH, H1) == {H3_P} - {H1_P}
    for port in (H1_P, H2_P, TO_BRANCH, TO_CLOUD):
        assert not fwd(hq, port, BROADCAST) & {H3_P, HR_TO_BRANCH}


def test_tagged_frames_are_dropped_unless_tags_are_carried(hq: FakeSwitch) -> None:
    # 0x1000 | 20: an 802.1Q tag naming VLAN 20 (OpenFlow 1.3 OFPVID_PRESENT | VID).
    for port, src in ((H1_P, H1), (TO_BRANCH, "02:00:00:00:77:77")):
        assert hq.trace(Frame(port, BROADCAST, src, vlan_vid=0x1014)).ports == set()
        assert hq.trace(Frame(port, BROADCAST, src)).ports
    carried = loads(CONFIG + "bridge: {inner_vlan_tag: true}\n")
    switch = FakeSwitch()
    switch.apply(program(plan_switch(carried, fabric(), "hq", HQ_PORTS)))
    tagged = Frame(H1_P, BROADCAST, H1, vlan_vid=0x1014)
    assert switch.trace(tagged).ports == {H2_P, TO_BRANCH, TO_CLOUD}


def test_trace_names_the_tables_a_frame_crosses(hq: FakeSwitch) -> None:
    trace = hq.trace(Frame(in_port=H1_P, eth_dst=BROADCAST, eth_src=H1))
    assert [f.table for f in trace.flows] == [
        "classify",
        "acl",
        "snoop",
        "proxy",
        "eth_dst",
        "flood",
    ]
    assert trace.ports == {H2_P, TO_BRANCH, TO_CLOUD}


def test_split_horizon_tunnel_floods_to_local_access_only(hq: FakeSwitch) -> None:
    assert fwd(hq, TO_BRANCH, BROADCAST) == {H1_P, H2_P}
    assert fwd(hq, TO_CLOUD, UNKNOWN) == {H1_P, H2_P}
    assert fwd(hq, HR_TO_BRANCH, BROADCAST) == {H3_P}


def test_never_tunnel_to_tunnel_even_for_known_remote_macs(hq: FakeSwitch) -> None:
    assert fwd(hq, TO_BRANCH, CLOUD_FIN) == frozenset()
    assert fwd(hq, TO_CLOUD, BRANCH_FIN) == frozenset()


# -- unicast ------------------------------------------------------------------------------


def test_known_local_mac_goes_to_its_access_port_only(hq: FakeSwitch) -> None:
    assert fwd(hq, H1_P, H2) == {H2_P}
    assert fwd(hq, TO_BRANCH, H2) == {H2_P}
    assert fwd(hq, H1_P, H1) == frozenset()  # never back out of the ingress port


def test_remote_mac_goes_into_the_tunnel_toward_its_site(hq: FakeSwitch) -> None:
    assert fwd(hq, H1_P, BRANCH_FIN) == {TO_BRANCH}
    assert fwd(hq, H2_P, CLOUD_FIN) == {TO_CLOUD}
    assert fwd(hq, H3_P, BRANCH_HR) == {HR_TO_BRANCH}


def test_unknown_unicast_floods_within_the_segment(hq: FakeSwitch) -> None:
    assert fwd(hq, H1_P, UNKNOWN) == {H2_P, TO_BRANCH, TO_CLOUD}


def test_tunnel_without_peer_still_carries_unicast_by_flooding() -> None:
    base = fabric()
    hq_switch = base.switches["hq"]
    ports = tuple(
        tunnel(p.name, p.segment, None) if p.kind == "tunnel" else p for p in hq_switch.ports
    )
    no_peers = Fabric(
        switches={**base.switches, "hq": hq_switch.model_copy(update={"ports": ports})}
    )
    switch = FakeSwitch()
    switch.apply(program(plan_switch(config(), no_peers, "hq", HQ_PORTS)))
    assert fwd(switch, H1_P, BRANCH_FIN) == {H2_P, TO_BRANCH, TO_CLOUD}


# -- what is dropped ----------------------------------------------------------------------


def test_unknown_port_and_reserved_macs_are_dropped(hq: FakeSwitch) -> None:
    assert fwd(hq, 99, BROADCAST) == frozenset()
    assert fwd(hq, H1_P, "01:80:c2:00:00:00") == frozenset()  # STP
    assert fwd(hq, H1_P, "01:80:c2:00:00:0e") == frozenset()  # LLDP
    assert fwd(hq, H1_P, "01:80:c2:00:00:10") != frozenset()  # not link-local


def test_every_table_misses_into_a_drop_or_the_next_named_table() -> None:
    misses = [f for f in hq_plan().flows if f.match == Match() and f.priority == 0]
    assert {f.table: f.goto for f in misses} == {
        t.name: (None if t.miss == "drop" else t.miss) for t in PIPELINE
    }
    punts = {t.name for t in PIPELINE if t.punt}
    assert {f.table for f in misses if f.actions} == punts == {"learn"}


def test_access_ports_with_known_hosts_drop_other_source_macs(hq: FakeSwitch) -> None:
    assert hq.forward(H1_P, BROADCAST, eth_src=H2) == frozenset()  # h2's MAC, from h1
    assert hq.forward(H1_P, H2, eth_src="02:00:00:00:77:77") == frozenset()
    # Tunnels and access ports without listed hosts admit any source.
    assert hq.forward(TO_BRANCH, H1, eth_src="02:00:00:00:77:77") == {H1_P}


def test_unresolved_ports_get_no_flows_until_the_switch_has_them() -> None:
    partial = {k: v for k, v in HQ_PORTS.items() if k != "vx100-2"}
    plan = hq_plan(partial)
    assert plan.unresolved == ("vx100-2",)
    switch = FakeSwitch()
    switch.apply(program(plan))
    assert fwd(switch, H1_P, BROADCAST) == {H2_P, TO_BRANCH}
    assert fwd(switch, H1_P, CLOUD_FIN) == {H2_P, TO_BRANCH}  # flood, no tunnel yet


def test_site_with_tunnels_only_floods_nothing_from_tunnels() -> None:
    ports = {"vx100-0": 1, "vx100-1": 2}
    only_tunnels = fabric().model_copy()
    switches = dict(only_tunnels.switches)
    cloud = switches["cloud-a"]
    switches["cloud-a"] = cloud.model_copy(
        update={"ports": tuple(p for p in cloud.ports if p.kind == "tunnel")}
    )
    switch = FakeSwitch()
    switch.apply(program(plan_switch(config(), Fabric(switches=switches), "cloud-a", ports)))
    assert fwd(switch, 1, BROADCAST) == frozenset()


# -- cookies, determinism, diffs ----------------------------------------------------------


def test_plans_are_deterministic_and_cookies_name_the_segment() -> None:
    plan = hq_plan()
    assert plan == hq_plan()
    assert all(f.cookie & ~0xFFFFFF == COOKIE_BASE for f in plan.flows)
    finance_in = [f for f in plan.flows if f.table == "classify" and f.match.get("in_port") == 1]
    assert [f.cookie for f in finance_in] == [COOKIE_BASE | 100]


def test_replanning_the_same_state_sends_nothing() -> None:
    assert diff(hq_plan(), hq_plan()) == []


def test_a_renumbered_port_moves_its_flows_and_group_buckets() -> None:
    moved = {**HQ_PORTS, "h2": 7}
    switch = FakeSwitch()
    switch.apply(program(hq_plan()))
    switch.apply(diff(hq_plan(), hq_plan(moved)))
    assert fwd(switch, H1_P, H2) == {7}
    assert fwd(switch, H1_P, BROADCAST) == {7, TO_BRANCH, TO_CLOUD}
    assert fwd(switch, 2, BROADCAST) == frozenset()


port_subsets = st.sets(st.sampled_from(sorted(HQ_PORTS)))


@settings(max_examples=60, deadline=None)
@given(before=port_subsets, after=port_subsets)
def test_diff_reaches_the_same_switch_as_programming_from_scratch(
    before: set[str], after: set[str]
) -> None:
    old = hq_plan({k: HQ_PORTS[k] for k in before})
    new = hq_plan({k: HQ_PORTS[k] for k in after})
    patched, fresh = FakeSwitch(), FakeSwitch()
    patched.apply(program(old))
    patched.apply(diff(old, new))
    fresh.apply(program(new))
    assert patched.flows == fresh.flows
    assert patched.groups == fresh.groups


# -- the model switch enforces what a real one does ---------------------------------------


def test_fake_switch_rejects_flows_to_missing_groups_and_backward_gotos() -> None:
    switch = FakeSwitch()
    with pytest.raises(OpenFlowError, match="OFPBAC_BAD_OUT_GROUP"):
        switch.apply([AddFlow(Flow("flood", 1, Match(), 0, (ToGroup(5),)))])
    with pytest.raises(OpenFlowError, match="OFPBIC_BAD_TABLE_ID"):
        switch.apply([AddFlow(Flow("flood", 1, Match(), 0, goto="classify"))])


# -- fabric checks ------------------------------------------------------------------------


def _one_switch(*ports: FabricPort, site: str = "hq") -> Fabric:
    return Fabric(switches={site: SiteSwitch(site=site, bridge="br", dpid=1, ports=ports)})


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ((access("p", "nope"),), "unknown segment 'nope'; use one of: finance, hr"),
        ((access("p", "apps"),), "segment 'apps' is mode l3"),
        ((access("p", "finance", "zz"),), "'zz' is not a MAC address"),
        ((access("p", "finance", "03:00:00:00:00:01"),), "is a group (multicast) address"),
        ((access("p", "finance"), access("p", "finance")), "listed twice"),
        (
            (access("p", "finance", H1), access("q", "finance", H1)),
            f"MAC {H1} of segment 'finance' is listed at ports 'p' and 'q'",
        ),
        ((tunnel("t", "finance", "hq"),), "peer 'hq' must be another site of segment"),
        ((tunnel("t", "hr", "cloud-a"),), "peer 'cloud-a' must be another site of segment"),
    ],
)
def test_fabric_problems_name_the_port_and_the_fix(
    ports: tuple[FabricPort, ...], message: str
) -> None:
    problems = check_fabric(config(), _one_switch(*ports))
    assert any(message in p for p in problems), problems


def test_fabric_site_problems() -> None:
    assert "site 'cloud-a' is not in segment 'hr'" in "".join(
        check_fabric(config(), _one_switch(access("p", "hr"), site="cloud-a"))
    )
    assert "unknown site 'mars'" in "".join(check_fabric(config(), _one_switch(site="mars")))
    two = Fabric(
        switches={
            "hq": SiteSwitch(site="hq", bridge="br", dpid=1),
            "branch": SiteSwitch(site="branch", bridge="br", dpid=1),
        }
    )
    assert "dpid 0x1 is already used by 'hq'" in "".join(check_fabric(config(), two))


def test_planning_a_bad_fabric_or_missing_site_raises_every_problem() -> None:
    with pytest.raises(FabricError, match="no switch for site 'branch'"):
        plan_switch(config(), _one_switch(), "branch", {})
    with pytest.raises(FabricError) as err:
        plan_switch(config(), _one_switch(access("p", "nope"), access("q", "apps")), "hq", {})
    assert len(err.value.problems) == 2
