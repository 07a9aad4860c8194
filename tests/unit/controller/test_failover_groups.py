"""A peer reached over two underlay networks: one fast-failover group, in the config's
order of preference, decides by port liveness alone (the model switch's `dead_ports`
stands in for BFD)."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from controller.fakeoftable import FakeSwitch
from controller.ofwire import group_from_ofp, to_ofp
from controller.openflow import AddGroup
from controller.pipeline import SwitchPlan, diff, failover_group_id, plan_switch, program
from overcast.config import loads
from overcast.fabric import Fabric, FabricPort, SiteSwitch

CONFIG = loads("""
underlays:
  isp-a: {}
  isp-b: {}
sites:
  hq:      {role: enterprise, underlay: {isp-a: 192.0.2.1, isp-b: 198.51.100.1}}
  branch:  {role: enterprise, underlay: {isp-b: 198.51.100.2, isp-a: 192.0.2.2}}
  cloud-a: {role: provider,   underlay: {isp-a: 192.0.2.3}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud-a]}
""")
H1, BRANCH, CLOUD = "02:00:00:00:01:01", "02:00:00:00:01:11", "02:00:00:00:01:21"
# The backup path's port is listed (and numbered) first: order must come from the config.
PORTS = {"h1": 1, "vx100-1-1": 5, "vx100-1": 6, "vx100-2": 7}
H1_P, VIA_B, VIA_A, TO_CLOUD = 1, 5, 6, 7


def port(name: str, underlay: str, peer: str) -> FabricPort:
    return FabricPort(name=name, kind="tunnel", segment="finance", peer=peer, underlay=underlay)


def access(name: str, mac: str) -> FabricPort:
    return FabricPort(name=name, kind="access", segment="finance", macs=(mac,))


FABRIC = Fabric(
    switches={
        "hq": SiteSwitch(
            site="hq",
            bridge="br",
            dpid=1,
            ports=(
                access("h1", H1),
                port("vx100-1-1", "isp-b", "branch"),
                port("vx100-1", "isp-a", "branch"),
                port("vx100-2", "isp-a", "cloud-a"),
            ),
        ),
        "branch": SiteSwitch(site="branch", bridge="br", dpid=2, ports=(access("b1", BRANCH),)),
        "cloud-a": SiteSwitch(site="cloud-a", bridge="br", dpid=3, ports=(access("c1", CLOUD),)),
    }
)


def hq_plan() -> SwitchPlan:
    return plan_switch(CONFIG, FABRIC, "hq", PORTS)


@pytest.fixture
def hq() -> FakeSwitch:
    switch = FakeSwitch()
    switch.apply(program(hq_plan()))
    return switch


def test_one_failover_group_per_peer_with_paths_in_preference_order() -> None:
    (group,) = [g for g in hq_plan().groups if g.type == "ff"]
    assert group.group_id == failover_group_id(100, 1)  # branch is site 1
    assert group.watch == (VIA_A, VIA_B)  # isp-a first, as `underlays:` orders them
    assert str(group) == f"group={group.group_id} type=ff [watch:6 output:6] [watch:5 output:5]"


def test_unicast_follows_the_first_live_path_and_nothing_leaves_with_none(hq: FakeSwitch) -> None:
    assert hq.forward(H1_P, BRANCH, H1) == {VIA_A}
    hq.dead_ports.add(VIA_A)
    assert hq.forward(H1_P, BRANCH, H1) == {VIA_B}
    hq.dead_ports.add(VIA_B)
    assert hq.forward(H1_P, BRANCH, H1) == set()  # fail closed: no path, no frame
    hq.dead_ports.clear()
    assert hq.forward(H1_P, BRANCH, H1) == {VIA_A}
    # A peer with one path is output to directly, as before.
    assert hq.forward(H1_P, CLOUD, H1) == {TO_CLOUD}


def test_a_flood_sends_one_copy_per_peer_and_either_path_is_received(hq: FakeSwitch) -> None:
    assert hq.forward(H1_P, "ff:ff:ff:ff:ff:ff", H1) == {VIA_A, TO_CLOUD}
    hq.dead_ports.add(VIA_A)
    assert hq.forward(H1_P, "ff:ff:ff:ff:ff:ff", H1) == {VIA_B, TO_CLOUD}
    for path in (VIA_A, VIA_B):
        # Split horizon holds on both paths: into the site only.
        assert hq.forward(path, "ff:ff:ff:ff:ff:ff", BRANCH) == {H1_P}
        assert hq.forward(path, H1, BRANCH) == {H1_P}
        assert hq.forward(path, CLOUD, BRANCH) == set()


def test_groups_are_added_before_and_removed_after_the_groups_that_chain_them() -> None:
    switch = FakeSwitch()
    switch.apply(program(hq_plan()))  # the model switch refuses a chain to a missing group
    switch.apply(diff(hq_plan(), SwitchPlan("hq")))
    assert switch.groups == {}


def test_a_failover_group_reads_back_as_itself() -> None:
    dp = ProtocolDesc(ofproto_v1_3.OFP_VERSION)
    for group in hq_plan().groups:
        mod = to_ofp(dp, AddGroup(group))
        desc = ofproto_v1_3_parser.OFPGroupDescStats(mod.type, mod.group_id, mod.buckets)
        assert group_from_ofp(dp, desc) == group
