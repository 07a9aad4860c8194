"""The hand-packed OpenFlow 1.3 encoder gives os-ken's bytes, exactly, for every message real
plans produce: whole programs, diffs, learned and bound deltas of the demo's config, the
ACL, proxy and failover configs, and random worlds. os-ken is the reference here only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_protocol, ofproto_v1_3

from controller.fabric import derive
from controller.learning import Host
from controller.neighbours import Neighbour
from controller.ofencode import encode
from controller.ofwire import to_ofp
from controller.openflow import AddFlow, DeleteFlow, Message, SetField
from controller.pipeline import (
    SwitchPlan,
    diff,
    learn_delta,
    neighbour_delta,
    plan_switch,
    program,
)
from overcast.config import OvercastConfig, loads
from overcast.fabric import Fabric
from tests.unit.controller import fixtures, test_acl, test_failover_groups, test_proxy
from tests.unit.controller.test_pipeline_properties import World, worlds

DP = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)
ROOT = Path(__file__).resolve().parents[3]


def oracle(msg: Message, xid: int) -> bytes:
    ofp_msg = to_ofp(DP, msg)
    ofp_msg.set_xid(xid)
    ofp_msg.serialize()
    return bytes(ofp_msg.buf)


def numbered(fabric: Fabric, site: str) -> dict[str, int]:
    switch = fabric.switches[next(k for k, s in fabric.switches.items() if s.site == site)]
    return {p.name: i + 1 for i, p in enumerate(switch.ports)}


def hosts_everywhere(config: OvercastConfig, fabric: Fabric) -> list[Host]:
    """Two learned MACs behind each learning access port of every site."""
    out: list[Host] = []
    for switch in fabric.switches.values():
        for port in switch.ports:
            if port.kind == "access" and not port.macs:
                for k in range(2):
                    mac = f"02:be:00:{switch.dpid & 0xFF:02x}:{len(out) & 0xFF:02x}:{k:02x}"
                    out.append(Host(port.segment, mac, switch.site, port.name, 0.0))
    return out


def addresses(hosts: list[Host]) -> list[Neighbour]:
    """An IPv4 and an IPv6 address for each host (ARP and ND proxy flows)."""
    return [
        n
        for i, h in enumerate(hosts)
        for n in (
            Neighbour(h.segment, f"192.0.2.{i + 10}", h.mac, 0.0),
            Neighbour(h.segment, f"2001:db8::{i + 10:x}", h.mac, 0.0),
        )
    ]


def messages(
    config: OvercastConfig, fabric: Fabric, fixed: dict[str, dict[str, int]]
) -> Iterator[Message]:
    """Everything the app would send for `config`: programs with learned hosts and bound
    addresses, the diffs when they go and ports leave, and each host's learn delta."""
    hosts = hosts_everywhere(config, fabric)
    bound = addresses(hosts)
    for switch in fabric.switches.values():
        site = switch.site
        ports = fixed.get(site) or numbered(fabric, site)
        empty = plan_switch(config, fabric, site, ports)
        full = plan_switch(config, fabric, site, ports, hosts, (), bound)
        held = plan_switch(config, fabric, site, ports, hosts, set(ports), bound)
        fewer = plan_switch(config, fabric, site, dict(list(ports.items())[::2]))
        yield from program(full)
        yield from diff(full, held)
        yield from diff(full, fewer)
        yield from diff(fewer, empty)
        yield from program(SwitchPlan(site))
        for i, host in enumerate(hosts):
            old = hosts[i - 1] if i % 2 else None
            moved = Host(host.segment, host.mac, old.site, old.port, 1.0) if old else None
            add, gone = learn_delta(
                config, fabric, site, ports, host, moved, bound[2 * i : 2 * i + 2]
            )
            yield from (AddFlow(f) for f in add)
            yield from (DeleteFlow(f) for f in gone)
        for n in bound[:6]:
            at = next((h.site, h.port) for h in hosts if h.mac == n.mac)
            add, gone = neighbour_delta(config, fabric, site, ports, (n, at), (n, None))
            yield from (AddFlow(f) for f in add)
            yield from (DeleteFlow(f) for f in gone)


def assert_same_bytes(stream: Iterator[Message]) -> int:
    count = 0
    for xid, msg in enumerate(stream, start=1):
        assert encode(msg, xid) == oracle(msg, xid), msg
        count += 1
    return count


def _demo() -> OvercastConfig:
    return loads((ROOT / "lab" / "demo.yaml").read_text())


def _failover() -> OvercastConfig:
    return test_failover_groups.CONFIG


def _failover_fabric() -> Fabric:
    return test_failover_groups.FABRIC


# name -> (config, fabric (None: derived), fixed port numbers by site)
Case = tuple[Callable[[], OvercastConfig], Callable[[], Fabric] | None, dict[str, dict[str, int]]]
CASES: dict[str, Case] = {
    "demo": (_demo, None, {}),
    "fixtures": (fixtures.config, fixtures.fabric, {"hq": fixtures.HQ_PORTS}),
    "acl": (lambda: loads(test_acl.CONFIG), None, {"hq": test_acl.HQ}),
    "proxy": (lambda: loads(test_proxy.CONFIG), None, test_proxy.PORTS),
    "failover": (_failover, _failover_fabric, {"hq": test_failover_groups.PORTS}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_message_of_real_plans_is_byte_for_byte_os_kens(case: str) -> None:
    make_config, make_fabric, ports = CASES[case]
    config = make_config()
    fabric = make_fabric() if make_fabric else derive(config)
    assert assert_same_bytes(messages(config, fabric, ports)) > 20


def test_the_shapes_that_matter_are_covered() -> None:
    """The cases above do reach every kind of message and action the pipeline has."""
    seen: set[str] = set()
    for make_config, make_fabric, ports in CASES.values():
        config = make_config()
        fabric = make_fabric() if make_fabric else derive(config)
        for msg in messages(config, fabric, ports):
            seen.add(type(msg).__name__)
            flow = getattr(msg, "flow", None)
            for action in flow.actions if flow else ():
                seen.add(
                    f"SetField:{action.field}"
                    if isinstance(action, SetField)
                    else type(action).__name__
                )
    assert {
        "AddFlow", "DeleteFlow", "ClearFlows", "AddGroup", "ModifyGroup", "DeleteGroup",
        "ClearGroups", "Barrier", "Output", "ToGroup", "ToController", "ToInPort", "Move",
        "SetField:nd_reserved", "SetField:nd_options_type", "SetField:ipv6_nd_tll",
        "SetField:arp_spa", "SetField:ipv6_src",
    } <= seen  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(world=worlds(), xid=st.integers(0, 0xFFFFFFFF))
def test_random_worlds_encode_as_os_ken_does(world: World, xid: int) -> None:
    for msg in messages(world.config, world.fabric, {}):
        assert encode(msg, xid) == oracle(msg, xid), msg
