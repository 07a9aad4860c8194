import ipaddress
from pathlib import Path

import pytest

from bridge.keys import generate_private_key, public_key_of
from controller.fabric import derive
from lab.plan import LabPlan, PlanError, discovered, host_mac, plan_lab
from overcast.config import InvalidConfig, OvercastConfig, load, loads

DEMO = Path(__file__).parents[3] / "lab" / "demo.yaml"


def make_plan(config: OvercastConfig, lab_id: str = "oc1234", **kwargs: Path) -> LabPlan:
    keys = {site: public_key_of(generate_private_key()) for site in config.sites}
    return plan_lab(config, lab_id, keys, **kwargs)


@pytest.fixture
def demo() -> OvercastConfig:
    return load(DEMO)


def test_every_name_carries_the_lab_id(demo: OvercastConfig) -> None:
    lab = make_plan(demo, state_root=Path("/tmp/x"))
    assert all(ns.startswith("oc1234") for ns in lab.namespaces)
    assert len(set(lab.namespaces)) == len(lab.namespaces)
    assert lab.state_dir == Path("/tmp/x/oc1234")
    assert all(s.dir.is_relative_to(lab.state_dir) for s in lab.sites)
    # WireGuard interfaces are machine-global (wireguard-go's UAPI socket): lab id first.
    assert [s.dataplane.wireguard.name for s in lab.sites] == [
        "oc1234wg0",
        "oc1234wg1",
        "oc1234wg2",
        "oc1234wg3",
    ]


def test_sites_get_distinct_dpids_and_management_addresses(demo: OvercastConfig) -> None:
    lab = make_plan(demo)
    assert [s.name for s in lab.sites] == ["hq", "branch", "cloud-a", "cloud-b"]
    assert len({s.dpid for s in lab.sites}) == 4
    mgmt = {s.mgmt for s in lab.sites} | {lab.controller}
    assert len(mgmt) == 5
    assert all(m.network == ipaddress.ip_network("198.18.0.0/24") for m in mgmt)
    assert lab.controller_target == "tcp:198.18.0.1:6653"


def test_hosts_use_the_bridge_plans_inner_mtu(demo: OvercastConfig) -> None:
    lab = make_plan(demo)
    # 1500 underlay - 60 WireGuard over IPv4 - 50 VXLAN (bridge.mtu)
    assert {h.mtu for h in lab.hosts} == {1390}
    narrow = loads(
        DEMO.read_text().replace(
            "isp-b: 198.51.100.2}}", "isp-b: 198.51.100.2}, underlay_mtu: 1400}"
        )
    )
    assert {h.mtu for h in make_plan(narrow).hosts} == {1290}


def test_hosts_get_unique_addresses_and_macs(demo: OvercastConfig) -> None:
    lab = make_plan(demo)
    assert len(lab.hosts) == 4
    assert len({h.address for h in lab.hosts}) == 4
    assert len({h.mac for h in lab.hosts}) == 4
    assert all(h.address.network == ipaddress.ip_network("198.19.0.0/24") for h in lab.hosts)
    assert [h.port for h in lab.hosts_at("hq")] == ["finance-1"]


def test_host_macs_are_local_unicast_and_differ_per_lab() -> None:
    mac = host_mac("oc1234", 0, 1, 2)
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01
    assert mac != host_mac("oc9999", 0, 1, 2)


def test_one_underlay_namespace_per_network(demo: OvercastConfig) -> None:
    lab = make_plan(demo)
    assert [(u.name, u.netns, u.site_if) for u in lab.underlays] == [
        ("isp-a", "oc1234.wan.isp-a", "wan-isp-a"),
        ("isp-b", "oc1234.wan.isp-b", "wan-isp-b"),
    ]
    assert {n: str(a) for n, a in lab.site("branch").underlays.items()} == {
        "isp-a": "192.0.2.2",
        "isp-b": "198.51.100.2",
    }


def test_the_fabric_the_controller_derives_lists_hosts_and_tunnels(demo: OvercastConfig) -> None:
    lab = make_plan(demo)
    fab = derive(demo, discovered(lab))  # what the lab's OVSDB tags tell the controller
    assert set(fab.switches) == {"hq", "branch", "cloud-a", "cloud-b"}
    hq = fab.switches["hq"]
    assert hq.dpid == 1 and hq.bridge == "br-overcast"
    access = [p for p in hq.ports if p.kind == "access"]
    assert [(p.name, p.segment, p.macs) for p in access] == [
        ("finance-1", "finance", (lab.hosts_at("hq")[0].mac,))
    ]
    tunnels = [p for p in hq.ports if p.kind == "tunnel"]
    # Three peers over two underlay networks: one tunnel per path.
    assert len(tunnels) == 6 and {p.segment for p in tunnels} == {"finance"}
    assert {(p.peer, p.underlay) for p in tunnels} == {
        (peer, net) for peer in ("branch", "cloud-a", "cloud-b") for net in ("isp-a", "isp-b")
    }
    # Every tunnel port is a device the bridge plan creates at that site.
    assert {p.name for p in tunnels} == {t.name for t in lab.site("hq").dataplane.tunnels()}


def test_hosts_per_segment_and_one_subnet_per_segment() -> None:
    config = loads(
        """
sites:
  a: {role: enterprise, underlay: 192.0.2.1}
  b: {role: enterprise, underlay: 192.0.2.2}
segments:
  one: {mode: l2, vni: 1, vlan: 1, sites: [a, b]}
  two: {mode: l2, vni: 2, vlan: 2, sites: [a, b]}
  routed: {mode: l3, prefixes: [10.0.0.0/8], sites: [a, b]}
lab: {hosts_per_segment: 2, hosts: 198.19.4.0/23}
"""
    )
    lab = make_plan(config)
    assert len(lab.hosts) == 8  # L3 segments get no switch ports
    assert lab.routed_hosts == ()  # nor, announcing nothing, routed hosts
    nets = {h.segment: h.address.network for h in lab.hosts}
    assert nets == {
        "one": ipaddress.ip_network("198.19.4.0/24"),
        "two": ipaddress.ip_network("198.19.5.0/24"),
    }


ROUTED = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
  cloud:  {role: enterprise, underlay: 192.0.2.3}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
  apps:
    mode: l3
    prefixes: [10.20.0.0/16, "2001:db8:20::/48"]
    sites: [hq, branch, cloud]
    announce:
      hq: ["2001:db8:20:1::/64", 10.20.1.0/24, 10.20.9.0/24]
      branch: [10.20.2.0/24]
      cloud: [10.20.3.0/29]
"""


def test_routed_hosts_sit_in_the_first_prefix_each_site_announces() -> None:
    lab = make_plan(loads(ROUTED))
    # cloud's /29 has no tenth address: no host there.
    hq, branch = lab.routed_hosts
    assert (hq.site, hq.segment, hq.label) == ("hq", "apps", "hq/apps-1")
    assert (str(hq.address), str(hq.gateway)) == ("10.20.1.10/24", "10.20.1.1/24")
    assert (str(hq.address6), str(hq.gateway6)) == ("2001:db8:20:1::a/64", "2001:db8:20:1::1/64")
    assert [(str(a), str(g.ip)) for a, g in hq.addresses] == [
        ("10.20.1.10/24", "10.20.1.1"),
        ("2001:db8:20:1::a/64", "2001:db8:20:1::1"),
    ]
    assert (str(branch.address), branch.address6, len(branch.addresses)) == (
        "10.20.2.10/24",
        None,
        1,
    )
    # A real host's MTU (the bridge clamps TCP's MSS), on its site's interface lan-<segment>.
    assert hq.mtu == 1500 and hq.port == "lan-apps"
    # Named like the lab's hosts, so the lab's teardown finds them by name too.
    assert hq.netns == "oc1234-hq.apps.1" and hq.netns in lab.namespaces
    assert len(set(lab.namespaces)) == len(lab.namespaces)
    # The L2 segment's hosts are what they were: the switch ports.
    assert [h.segment for h in lab.hosts] == ["finance", "finance"]


def test_a_routed_prefix_over_the_labs_own_hosts_names_the_fix() -> None:
    text = ROUTED.replace("10.20.", "198.19.")
    with pytest.raises(PlanError, match=r"announce\.hq: 198\.19\.1\.0/24 overlaps lab\.hosts"):
        make_plan(loads(text))
    # Moving the lab's hosts elsewhere is the fix.
    assert make_plan(loads(text + "lab: {hosts: 198.18.128.0/17}\n")).routed_hosts


def test_too_small_prefixes_name_the_fix() -> None:
    config = loads(
        """
sites:
  a: {role: enterprise, underlay: 192.0.2.1}
  b: {role: enterprise, underlay: 192.0.2.2}
segments:
  one: {mode: l2, vni: 1, vlan: 1, sites: [a, b]}
  two: {mode: l2, vni: 2, vlan: 2, sites: [a, b]}
lab: {hosts: 198.19.4.0/24}
"""
    )
    with pytest.raises(PlanError, match=r"no /24 left for segments\.two; use a larger prefix"):
        make_plan(config)


def test_missing_public_key_is_a_plan_error(demo: OvercastConfig) -> None:
    with pytest.raises(PlanError, match="no public key for site"):
        plan_lab(demo, "oc1234", {})


def test_bad_lab_section_is_a_config_error() -> None:
    with pytest.raises(InvalidConfig, match=r"lab\.management: .*use an IPv4 /28 or larger"):
        loads(
            "sites: {a: {role: enterprise, underlay: 192.0.2.1}}\n"
            "lab: {management: 198.18.0.0/30}\n"
        )
