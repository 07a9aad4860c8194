"""Per-segment ACLs on the model switch: first match wins, the default is explicit, both
families, both directions where asked, and other segments are untouched."""

from __future__ import annotations

import pytest

from controller.fabric import derive
from controller.fakeoftable import FakeSwitch
from controller.learning import Host
from controller.openflow import Flow
from controller.pipeline import acl_rule_of, plan_switch, program
from controller.views import State, SwitchState, acls
from overcast.config import InvalidConfig, OvercastConfig, loads

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1, switch: {access: {eth1: finance, eth2: hr}}}
  branch: {role: enterprise, underlay: 192.0.2.2, switch: {access: {eth1: finance, eth2: hr}}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
  hr:      {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}
controller:
  acls:
    finance:
      default: deny
      rules:
        - {action: allow, eth_type: 0x0806}                       # ARP
        - {action: deny, ip_proto: tcp, dst_port: 23}             # no telnet, v4 or v6
        - {action: allow, ip_src: 192.0.2.0/28, both_ways: true}  # the servers, both ways
        - {action: allow, ip_proto: tcp, dst_port: 443}
"""
HQ = {"eth1": 1, "eth2": 2, "vx100-1": 11, "vx200-1": 21}
A, B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"  # finance hosts: A at hq, B at branch


def _hq(config: OvercastConfig) -> FakeSwitch:
    hosts = [Host("finance", B, "branch", "eth1", 0.0), Host("finance", A, "hq", "eth1", 0.0)]
    switch = FakeSwitch()
    switch.apply(program(plan_switch(config, derive(config), "hq", HQ, hosts)))
    return switch


def _ip(switch: FakeSwitch, src: str, dst: str, **l4: int) -> frozenset[int]:
    return switch.trace_frame(1, B, A, 0x0800, ipv4_src=src, ipv4_dst=dst, **l4).ports


@pytest.fixture
def hq() -> FakeSwitch:
    return _hq(loads(CONFIG))


def test_first_match_wins_and_the_default_is_applied(hq: FakeSwitch) -> None:
    telnet = {"ip_proto": 6, "tcp_dst": 23}
    web = {"ip_proto": 6, "tcp_dst": 443}
    assert _ip(hq, "198.51.100.7", "192.0.2.200", **web) == {11}  # rule 3
    assert _ip(hq, "192.0.2.5", "192.0.2.200", **telnet) == frozenset()  # rule 1 before 2
    assert _ip(hq, "192.0.2.5", "192.0.2.200", ip_proto=17, udp_dst=53) == {11}  # rule 2
    assert _ip(hq, "198.51.100.7", "192.0.2.200", ip_proto=17, udp_dst=53) == frozenset()
    assert hq.trace_frame(1, B, A, 0x0806).ports == {11}  # ARP: rule 0


def test_both_ways_rules_match_the_reply_too(hq: FakeSwitch) -> None:
    assert _ip(hq, "192.0.2.200", "192.0.2.5", ip_proto=17, udp_dst=5000) == {11}


def test_a_rule_without_addresses_covers_ipv6_too(hq: FakeSwitch) -> None:
    v6 = hq.trace_frame(
        1, B, A, 0x86DD, ipv6_src="2001:db8::1", ipv6_dst="2001:db8::2", ip_proto=6, tcp_dst=23
    )
    assert v6.ports == frozenset()
    web6 = hq.trace_frame(
        1, B, A, 0x86DD, ipv6_src="2001:db8::1", ipv6_dst="2001:db8::2", ip_proto=6, tcp_dst=443
    )
    assert web6.ports == {11}


def test_frames_from_tunnels_are_checked_too(hq: FakeSwitch) -> None:
    assert (
        hq.trace_frame(11, A, B, 0x0800, ipv4_src="198.51.100.7", ipv4_dst="198.51.100.8").ports
        == frozenset()
    )
    assert hq.trace_frame(11, A, B, 0x0806).ports == {1}


def test_other_segments_are_untouched(hq: FakeSwitch) -> None:
    broadcast = "ff:ff:ff:ff:ff:ff"
    assert hq.trace_frame(
        2, broadcast, "02:00:00:00:0c:01", 0x0800, ipv4_src="198.51.100.7", ipv4_dst="198.51.100.8"
    ).ports == {21}


def test_an_acl_for_an_unknown_segment_or_a_bad_rule_is_refused() -> None:
    bad = CONFIG.replace("    finance:\n      default", "    payroll:\n      default")
    with pytest.raises(InvalidConfig, match=r"controller.acls.payroll: no L2 segment 'payroll'"):
        loads(bad)
    with pytest.raises(InvalidConfig, match="dst_port need ip_proto"):
        loads(
            CONFIG.replace(
                "{action: allow, ip_proto: tcp, dst_port: 443}", "{action: allow, dst_port: 443}"
            )
        )
    with pytest.raises(InvalidConfig, match="default"):
        loads(CONFIG.replace("      default: deny\n", ""))  # the default is stated, always


def test_the_api_counts_hits_per_rule_and_site() -> None:
    config = loads(CONFIG)
    plan = plan_switch(config, derive(config), "hq", HQ)
    acl = [f for f in plan.flows if acl_rule_of(f, 100) is not None]
    packets: dict[tuple[str, int, object], int] = {f.key: 0 for f in acl}
    telnet: list[Flow] = [f for f in acl if acl_rule_of(f, 100) == 1]
    assert len(telnet) == 2  # IPv4 and IPv6
    for flow in telnet:
        packets[flow.key] = 3
    switch = SwitchState("hq", 1, "?", 1.0, True, HQ, (), plan.flows, packets, 0.0)  # type: ignore[arg-type]
    view = acls(State(config, derive(config), [switch], [], [], [], 0.0), {})
    rules = view["segments"]["finance"]["rules"]
    assert rules[1]["packets"] == {"hq": 6} and rules[1]["action"] == "deny"
    assert rules[-1] == {"rule": "default", "action": "deny", "packets": {"hq": 0}}
