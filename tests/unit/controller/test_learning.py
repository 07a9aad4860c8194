"""MAC learning, distributed: on the model switch, a MAC learned at one site is forwarded
to from every other site through exactly the tunnel toward it; moves, expiry and limits."""

from __future__ import annotations

from controller.config import Learning
from controller.fabric import derive
from controller.fakeoftable import FakeSwitch
from controller.learning import Host, MacTable
from controller.openflow import Flow, Match
from controller.pipeline import PRIORITY_HELD, learn_delta, plan_switch, program
from overcast.config import OvercastConfig, loads

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1, switch: {access: {eth1: finance, eth2: finance}}}
  branch: {role: enterprise, underlay: 192.0.2.2, switch: {access: {eth1: finance}}}
  cloud:  {role: provider,   underlay: 192.0.2.3, switch: {access: {eth1: finance}}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}
controller:
  learning: {max_macs_per_port: 2, max_macs_per_segment: 3, packet_ins_per_port: 5}
"""
# Tunnel ports are named by the bridge plan: vx<vni>-<peer's index in sites:>.
PORTS = {
    "hq": {"eth1": 1, "eth2": 2, "vx100-1": 11, "vx100-2": 12},
    "branch": {"eth1": 1, "vx100-0": 10, "vx100-2": 12},
    "cloud": {"eth1": 1, "vx100-0": 10, "vx100-1": 11},
}
A, B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def _config() -> OvercastConfig:
    return loads(CONFIG)


def _switches(hosts: list[Host], held: dict[str, set[str]] | None = None) -> dict[str, FakeSwitch]:
    config = _config()
    fabric = derive(config)
    out = {}
    for site, ports in PORTS.items():
        switch = FakeSwitch()
        plan = plan_switch(config, fabric, site, ports, hosts, (held or {}).get(site, set()))
        switch.apply(program(plan))
        out[site] = switch
    return out


def test_an_unknown_source_is_punted_once_and_still_forwarded() -> None:
    switches = _switches([])
    trace = switches["branch"].trace_frame(in_port=1, eth_dst=BROADCAST, eth_src=A)
    assert trace.to_controller
    assert trace.ports == {10, 12}  # flooded to both tunnels meanwhile


def test_a_mac_learned_at_one_site_is_reached_through_one_tunnel_from_every_other() -> None:
    before = _switches([])
    assert before["hq"].forward(1, A, eth_src=B) == {2, 11, 12}  # unknown: flooded
    learned = [Host("finance", A, "branch", "eth1", 0.0)]
    switches = _switches(learned)
    assert switches["hq"].forward(1, A, eth_src=B) == {11}  # only the tunnel to branch
    assert switches["cloud"].forward(1, A, eth_src=B) == {11}
    assert switches["branch"].forward(10, A) == {1}  # arriving from hq: to the host
    assert switches["cloud"].forward(10, A) == frozenset()  # split horizon: never hairpin
    # Steady state: the learned host's own frames raise no packet-in.
    assert not switches["branch"].trace_frame(in_port=1, eth_dst=B, eth_src=A).to_controller


def test_a_move_takes_the_old_place_away() -> None:
    table = MacTable(Learning())
    assert table.learn("finance", A, "branch", "eth1", 0.0) == ("learned", None)
    outcome, old = table.learn("finance", A, "hq", "eth2", 5.0)
    assert outcome == "moved" and old is not None and old.site == "branch"
    switches = _switches(list(table.hosts.values()))
    assert switches["hq"].forward(1, A, eth_src=B) == {2}
    assert switches["cloud"].forward(1, A, eth_src=B) == {10}  # now toward hq
    # At branch the old source entry is gone: A sending there again is a new packet-in.
    assert switches["branch"].trace_frame(in_port=1, eth_dst=B, eth_src=A).to_controller


def test_expiry_forgets_only_the_current_place() -> None:
    table = MacTable(Learning())
    table.learn("finance", A, "branch", "eth1", 0.0)
    table.learn("finance", A, "hq", "eth2", 1.0)
    assert table.forget("finance", A, "branch", "eth1") is None  # a stale report of the old place
    assert table.forget("finance", A, "hq", "eth2") is not None
    assert table.count("finance") == 0


def test_table_limits_hold_the_port_down() -> None:
    table = MacTable(_config().controller.learning)
    macs = [f"02:00:00:00:0c:{i:02x}" for i in range(4)]
    assert table.learn("finance", macs[0], "hq", "eth1", 0.0)[0] == "learned"
    assert table.learn("finance", macs[1], "hq", "eth1", 0.0)[0] == "learned"
    assert table.learn("finance", macs[2], "hq", "eth1", 0.0)[0] == "port_full"
    assert table.held_ports("hq") == {"eth1"}
    assert table.learn("finance", macs[2], "hq", "eth2", 0.0)[0] == "learned"
    assert table.learn("finance", macs[3], "branch", "eth1", 0.0)[0] == "segment_full"
    # A held port forwards without asking: no packet-in for a new source.
    switches = _switches(list(table.hosts.values()), {"hq": {"eth1"}})
    trace = switches["hq"].trace_frame(in_port=1, eth_dst=BROADCAST, eth_src=macs[3])
    assert not trace.to_controller and trace.ports == {2, 11, 12}
    assert any(f.priority == PRIORITY_HELD for f in trace.flows)
    assert table.release(9.0) == [] and set(table.release(10.0)) == {
        ("hq", "eth1"),
        ("branch", "eth1"),
    }


def test_packet_ins_are_rate_limited_per_port() -> None:
    table = MacTable(_config().controller.learning)  # 5 a second
    assert all(table.admit("hq", "eth1", 0.0) for _ in range(5))
    assert not table.admit("hq", "eth1", 0.0)
    assert table.held_ports("hq") == {"eth1"}
    assert table.admit("hq", "eth2", 0.0)  # another port has its own budget
    assert table.admit("hq", "eth1", 1.0)  # a second later, tokens are back


def test_a_configured_hosts_mac_is_never_learned_elsewhere() -> None:
    table = MacTable(Learning(), static={("finance", A): ("hq", "eth1")})
    assert table.learn("finance", A, "branch", "eth1", 0.0) == ("static", None)
    assert table.count("finance") == 0


def test_the_per_packet_in_delta_keeps_each_plan_what_a_full_plan_gives() -> None:
    config = _config()
    fabric = derive(config)
    table = MacTable(Learning())
    events = [
        ("finance", A, "branch", "eth1"),
        ("finance", B, "hq", "eth1"),
        ("finance", A, "hq", "eth2"),  # a move
        ("finance", "02:00:00:00:0c:01", "cloud", "eth1"),
    ]
    plans = {site: plan_switch(config, fabric, site, ports) for site, ports in PORTS.items()}
    # Flows by identity (table, priority, match), as on a switch: an add replaces.
    flows = {site: {f.key: f for f in plan.flows} for site, plan in plans.items()}

    def apply(at: str, add: list[Flow], gone: list[Flow]) -> None:
        for f in gone:
            flows[at].pop(f.key, None)
        flows[at].update((f.key, f) for f in add)

    for now, (segment, mac, site, port) in enumerate(events):
        _, old = table.learn(segment, mac, site, port, float(now))
        host = table.hosts[(segment, mac)]
        for at, ports in PORTS.items():
            apply(at, *learn_delta(config, fabric, at, ports, host, old))
    expired = table.forget("finance", B, "hq", "eth1")
    for at, ports in PORTS.items():
        apply(at, *learn_delta(config, fabric, at, ports, None, expired))
    for at, ports in PORTS.items():
        full = plan_switch(config, fabric, at, ports, list(table.hosts.values()))
        assert set(flows[at].values()) == set(full.flows), at


def test_learned_flows_match_as_a_switch_reports_them() -> None:
    """host_flows builds its matches pre-sorted (the learning hot path); they must equal
    Match.of of the same fields, which is how flows read back from a switch compare."""
    config = _config()
    fabric = derive(config)
    for host in (Host("finance", A, "hq", "eth1", 0.0), Host("finance", B, "branch", "eth1", 0.0)):
        for at, ports in PORTS.items():
            add, _ = learn_delta(config, fabric, at, ports, host)
            assert add, at
            for flow in add:
                assert flow.match == Match.of(**dict(flow.match.fields)), flow
