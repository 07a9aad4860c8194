"""The ARP/ND proxy on the model switch: a request for a host at another site is answered
at the requester's switch (the answer's fields checked field by field), a local host gets
its neighbours' requests alone, unknown targets, probes and DAD flood as before, and the
host addresses are learned from ARP/ND frames within limits."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from controller.config import Learning
from controller.fabric import derive
from controller.fakeoftable import FakeSwitch, Trace
from controller.learning import Host, MacTable
from controller.neighbours import Neighbour, NeighbourTable, sender, solicited_node
from controller.openflow import Flow
from controller.pipeline import learn_delta, neighbour_delta, plan_switch, program
from overcast.config import InvalidConfig, OvercastConfig, loads

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1, switch: {access: {eth1: finance, eth2: finance}}}
  branch: {role: enterprise, underlay: 192.0.2.2, switch: {access: {eth1: finance}}}
  cloud:  {role: provider,   underlay: 192.0.2.3, switch: {access: {eth1: finance}}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}
"""
PORTS = {
    "hq": {"eth1": 1, "eth2": 2, "vx100-1": 11, "vx100-2": 12},
    "branch": {"eth1": 1, "vx100-0": 10, "vx100-2": 12},
    "cloud": {"eth1": 1, "vx100-0": 10, "vx100-1": 11},
}
A, B, C = "02:00:00:00:0a:01", "02:00:00:00:0b:01", "02:00:00:00:0c:01"  # hq, branch, hq
A4, B4, C4 = "192.0.2.21", "192.0.2.22", "192.0.2.23"
A6, B6 = "2001:db8::21", "2001:db8::22"
BROADCAST = "ff:ff:ff:ff:ff:ff"
HOSTS = [
    Host("finance", A, "hq", "eth1", 0.0),
    Host("finance", B, "branch", "eth1", 0.0),
    Host("finance", C, "hq", "eth2", 0.0),
]
BOUND = [
    Neighbour("finance", A4, A, 0.0),
    Neighbour("finance", B4, B, 0.0),
    Neighbour("finance", C4, C, 0.0),
    Neighbour("finance", A6, A, 0.0),
    Neighbour("finance", B6, B, 0.0),
]


def _switch(site: str, text: str = CONFIG, bound: list[Neighbour] = BOUND) -> FakeSwitch:
    config = loads(text)
    switch = FakeSwitch()
    switch.apply(program(plan_switch(config, derive(config), site, PORTS[site], HOSTS, (), bound)))
    return switch


def arp(switch: FakeSwitch, in_port: int, src: str, spa: str, tpa: str, op: int = 1) -> Trace:
    return switch.trace_frame(
        in_port,
        BROADCAST,
        src,
        0x0806,
        arp_op=op,
        arp_sha=src,
        arp_spa=spa,
        arp_tha="00:00:00:00:00:00",
        arp_tpa=tpa,
    )


def ns(switch: FakeSwitch, in_port: int, src: str, ip6: str, target: str) -> Trace:
    group = solicited_node(target)
    mac = "33:33:" + ":".join(f"{b:02x}" for b in ipaddress.IPv6Address(group).packed[-4:])
    return switch.trace_frame(
        in_port,
        mac,
        src,
        0x86DD,
        ip_proto=58,
        icmpv6_type=135,
        icmpv6_code=0,
        ipv6_src=ip6,
        ipv6_dst=group,
        ipv6_nd_target=target,
        ipv6_nd_sll=src,
    )


def test_an_arp_request_for_a_host_at_another_site_is_answered_at_the_local_switch() -> None:
    trace = arp(_switch("hq"), 1, A, A4, B4)
    assert trace.ports == set() and not trace.to_controller  # no tunnel, no packet-in
    (reply,) = trace.answers
    # RFC 826: the reply goes to the asker, from the target, opcode 2, sender and target swapped.
    assert (reply["eth_dst"], reply["eth_src"], reply["arp_op"]) == (A, B, 2)
    assert (reply["arp_sha"], reply["arp_spa"]) == (B, B4)
    assert (reply["arp_tha"], reply["arp_tpa"]) == (A, A4)


def test_a_neighbour_solicitation_is_answered_with_a_solicited_override_advertisement() -> None:
    trace = ns(_switch("hq"), 1, A, A6, B6)
    assert trace.ports == set() and not trace.to_controller
    (na,) = trace.answers
    assert (na["eth_dst"], na["eth_src"]) == (A, B)
    assert (na["ipv6_dst"], na["ipv6_src"], na["ipv6_nd_target"]) == (A6, B6, B6)
    assert na["icmpv6_type"] == 136
    assert na["nd_reserved"] == 0x60000000  # RFC 4861 section 4.4: S and O set, R clear
    # The NS's source link-layer option becomes the target link-layer option, with B.
    assert (na["nd_options_type"], na["ipv6_nd_tll"]) == (2, B)


def test_a_request_for_a_local_host_goes_to_its_port_alone() -> None:
    hq = _switch("hq")
    assert arp(hq, 1, A, A4, C4).ports == {2}
    assert ns(hq, 2, C, "2001:db8::23", A6).ports == {1}
    # Its own gratuitous ARP still reaches everyone, as without the proxy.
    assert arp(hq, 1, A, A4, A4).ports == {2, 11, 12}


def test_unknown_targets_probes_and_dad_flood_as_before() -> None:
    hq = _switch("hq")
    assert arp(hq, 1, A, A4, "192.0.2.99").ports == {2, 11, 12}
    # RFC 5227 probe and RFC 4862 DAD: never answered from a binding that may be stale.
    probe = arp(hq, 1, A, "0.0.0.0", B4)
    assert probe.ports == {2, 11, 12} and not probe.answers and not probe.to_controller
    dad = ns(hq, 1, A, "::", B6)
    assert dad.ports == {2, 11, 12} and not dad.answers and not dad.to_controller


def test_requests_from_a_tunnel_are_not_answered_there() -> None:
    # branch asked for hq's host and had no answer: hq's hosts answer for themselves.
    trace = arp(_switch("hq"), 11, B, B4, A4)
    assert trace.ports == {1, 2} and not trace.answers and not trace.to_controller


def test_an_unknown_address_is_sent_to_the_controller_once_and_still_answered() -> None:
    hq = _switch("hq")
    known = arp(hq, 1, A, A4, B4)
    assert not known.to_controller
    new = arp(hq, 1, A, "192.0.2.77", B4)
    assert new.to_controller and len(new.answers) == 1
    # A frame the learn table already sent (an unknown MAC) is not sent twice.
    stranger = arp(hq, 2, "02:00:00:00:0d:01", "192.0.2.78", B4)
    assert stranger.to_controller
    assert [f.table for f in stranger.flows].count("snoop") == 1
    assert sum(1 for f in stranger.flows if f.actions and "controller" in str(f)) == 1
    na = hq.trace_frame(
        1, "33:33:00:00:00:01", A, 0x86DD, ip_proto=58, icmpv6_type=136, ipv6_src="2001:db8::77"
    )
    assert na.to_controller


def test_the_proxy_can_be_turned_off_per_segment() -> None:
    off = _switch("hq", CONFIG + "controller: {proxy: {finance: false}}\n")
    trace = arp(off, 1, A, A4, B4)
    assert trace.ports == {2, 11, 12} and not trace.answers and not trace.to_controller
    assert not any(f.table in ("snoop", "proxy") and f.priority > 0 for f in off.flows.values())
    with pytest.raises(InvalidConfig, match=r"controller\.proxy\.payroll"):
        loads(CONFIG + "controller: {proxy: {payroll: false}}\n")


def test_the_deltas_keep_each_plan_what_a_full_plan_gives() -> None:
    config: OvercastConfig = loads(CONFIG)
    fabric = derive(config)
    macs, ips = MacTable(Learning()), NeighbourTable(Learning())
    flows = {
        site: {f.key: f for f in plan_switch(config, fabric, site, ports).flows}
        for site, ports in PORTS.items()
    }

    def apply(add: list[Flow], gone: list[Flow], at: str) -> None:
        for f in gone:
            flows[at].pop(f.key, None)
        flows[at].update((f.key, f) for f in add)

    def where(mac: str) -> tuple[str, str] | None:
        host = macs.hosts.get(("finance", mac))
        return (host.site, host.port) if host else None

    def learn_mac(mac: str, site: str, port: str) -> None:
        _, old = macs.learn("finance", mac, site, port, 0.0)
        host, bound = macs.hosts[("finance", mac)], ips.of_mac("finance", mac)
        for at, ports in PORTS.items():
            apply(*learn_delta(config, fabric, at, ports, host, old, bound), at)

    def bind(ip: str, mac: str) -> None:
        _, old = ips.learn("finance", ip, mac, 0.0)
        new = ips.bindings[("finance", ip)]
        for at, ports in PORTS.items():
            was = (old, where(old.mac)) if old else None
            apply(*neighbour_delta(config, fabric, at, ports, (new, where(mac)), was), at)

    learn_mac(A, "hq", "eth1")
    bind(A4, A)
    bind(A6, A)
    learn_mac(B, "branch", "eth1")
    bind(B4, B)
    learn_mac(A, "cloud", "eth1")  # a move: its addresses' flows follow it
    bind(B4, A)  # an address moves to another MAC
    learn_mac(C, "hq", "eth2")
    bind(C4, C)
    gone = macs.forget("finance", C, "hq", "eth2")  # expiry: its addresses go with it
    unbound = ips.forget_mac("finance", C)
    for at, ports in PORTS.items():
        apply(*learn_delta(config, fabric, at, ports, None, gone, unbound), at)
    for at, ports in PORTS.items():
        full = plan_switch(
            config, fabric, at, ports, list(macs.hosts.values()), (), list(ips.bindings.values())
        )
        assert set(flows[at].values()) == set(full.flows), at


def test_the_neighbour_table_moves_limits_and_forgets() -> None:
    table = NeighbourTable(Learning(max_ips_per_mac=2, max_ips_per_segment=3))
    assert table.learn("finance", A4, A, 0.0) == ("learned", None)
    assert table.learn("finance", A4, A, 1.0)[0] == "known"
    assert table.learn("finance", A6, A, 0.0)[0] == "learned"
    assert table.learn("finance", "192.0.2.99", A, 0.0) == ("mac_full", None)
    assert table.learn("finance", B4, B, 0.0)[0] == "learned"
    assert table.learn("finance", "192.0.2.98", C, 0.0) == ("segment_full", None)
    outcome, old = table.learn("finance", A4, B, 2.0)  # A4 now at B
    assert outcome == "moved" and old is not None and old.mac == A
    assert [n.ip for n in table.forget_mac("finance", B)] == [A4, B4]
    assert table.count("finance") == 1


def _eth(dst: bytes, src: bytes, eth_type: int) -> bytes:
    return dst + src + struct.pack("!H", eth_type)


def _arp_frame(src: str, spa: str, sha: str | None = None, op: int = 1) -> bytes:
    mac = bytes.fromhex(src.replace(":", ""))
    sha_b = bytes.fromhex((sha or src).replace(":", ""))
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha_b + ipaddress.IPv4Address(spa).packed
    return _eth(b"\xff" * 6, mac, 0x0806) + body + bytes(6) + bytes(4)


def _nd_frame(src: str, ip6: str, icmp_type: int = 135, hop_limit: int = 255) -> bytes:
    mac = bytes.fromhex(src.replace(":", ""))
    ip = struct.pack("!IHBB", 6 << 28, 32, 58, hop_limit) + ipaddress.IPv6Address(ip6).packed
    ip += ipaddress.IPv6Address("ff02::1:ff00:22").packed
    icmp = struct.pack("!BBHI", icmp_type, 0, 0, 0) + ipaddress.IPv6Address(B6).packed
    return _eth(bytes.fromhex("3333ff000022"), mac, 0x86DD) + ip + icmp + b"\x01\x01" + mac


def test_addresses_are_read_from_what_hosts_say_about_themselves() -> None:
    assert sender(_arp_frame(A, A4)) == (A4, A)
    assert sender(_arp_frame(A, A4, op=2)) == (A4, A)
    assert sender(_arp_frame(A, A4, sha=B)) is None  # proxy ARP by a router: not its own
    assert sender(_arp_frame(A, "0.0.0.0")) is None  # RFC 5227 probe
    assert sender(_arp_frame(A, "224.0.0.1")) is None
    assert sender(_nd_frame(A, A6)) == (A6, A)
    assert sender(_nd_frame(A, A6, icmp_type=136)) == (A6, A)
    assert sender(_nd_frame(A, "::")) is None  # DAD
    assert sender(_nd_frame(A, A6, hop_limit=64)) is None  # RFC 4861 7.1.1: not ND
    assert sender(_nd_frame(A, A6, icmp_type=128)) is None  # an echo request
    assert sender(b"\x00" * 20) is None


def test_the_acl_comes_first() -> None:
    acl = """controller:
  acls:
    finance:
      default: allow
      rules: [{action: deny, eth_type: 0x0806, eth_src: "02:00:00:00:0c:01"}]
"""
    hq = _switch("hq", CONFIG + acl)
    assert len(arp(hq, 1, A, A4, B4).answers) == 1  # allowed: answered as without an ACL
    denied = arp(hq, 2, C, C4, B4)
    assert denied.ports == set() and not denied.answers
