import ipaddress
from pathlib import Path

import pytest

from lab.plan import PlanError, host_mac, plan_lab
from overcast.config import OvercastConfig, load, loads

DEMO = Path(__file__).parents[3] / "lab" / "demo.yaml"


@pytest.fixture
def demo() -> OvercastConfig:
    return load(DEMO)


def test_every_name_carries_the_lab_id(demo: OvercastConfig) -> None:
    plan = plan_lab(demo, "oc1234", 1370, state_root=Path("/tmp/x"))
    assert all(ns.startswith("oc1234") for ns in plan.namespaces)
    assert len(set(plan.namespaces)) == len(plan.namespaces)
    assert plan.state_dir == Path("/tmp/x/oc1234")
    assert all(s.dir.is_relative_to(plan.state_dir) for s in plan.sites)


def test_sites_get_distinct_dpids_and_management_addresses(demo: OvercastConfig) -> None:
    plan = plan_lab(demo, "oc1234", 1370)
    assert [s.name for s in plan.sites] == ["hq", "branch", "cloud-a"]
    assert len({s.dpid for s in plan.sites}) == 3
    mgmt = {s.mgmt for s in plan.sites} | {plan.controller}
    assert len(mgmt) == 4
    assert all(m.network == ipaddress.ip_network("198.18.0.0/24") for m in mgmt)
    assert plan.controller_target == "tcp:198.18.0.1:6653"


def test_hosts_use_the_inner_mtu_and_unique_addresses(demo: OvercastConfig) -> None:
    plan = plan_lab(demo, "oc1234", 1366)
    assert len(plan.hosts) == 3
    assert {h.mtu for h in plan.hosts} == {1366}
    assert len({h.address for h in plan.hosts}) == 3
    assert len({h.mac for h in plan.hosts}) == 3
    assert all(h.address.network == ipaddress.ip_network("198.19.0.0/24") for h in plan.hosts)
    assert [h.port for h in plan.hosts_at("hq")] == ["finance-1"]


def test_host_macs_are_local_unicast_and_differ_per_lab() -> None:
    mac = host_mac("oc1234", 0, 1, 2)
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01
    assert mac != host_mac("oc9999", 0, 1, 2)


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
    plan = plan_lab(config, "oc1234", 1400)
    assert len(plan.hosts) == 8  # L3 segments get no lab hosts
    nets = {h.segment: h.address.network for h in plan.hosts}
    assert nets == {
        "one": ipaddress.ip_network("198.19.4.0/24"),
        "two": ipaddress.ip_network("198.19.5.0/24"),
    }


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
        plan_lab(config, "oc1234", 1400)


def test_bad_lab_section_is_a_config_error() -> None:
    from overcast.config import InvalidConfig

    with pytest.raises(InvalidConfig, match=r"lab\.management: .*use an IPv4 /28 or larger"):
        loads(
            "sites: {a: {role: enterprise, underlay: 192.0.2.1}}\n"
            "lab: {management: 198.18.0.0/30}\n"
        )
