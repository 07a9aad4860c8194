"""Properties of every plan, over random configs and fabrics (hypothesis).

For each switch, every ingress port and a set of destinations (broadcast, every known MAC,
an unknown one): a frame stays in its segment, never returns by its ingress port, never
goes from one tunnel into another, and a known local host gets it alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.fakeoftable import FakeSwitch
from controller.pipeline import plan_switch, program
from overcast.config import OvercastConfig, loads
from overcast.fabric import Fabric, FabricPort, SiteSwitch

BROADCAST, UNKNOWN, STRANGER = "ff:ff:ff:ff:ff:ff", "02:99:99:99:99:99", "02:77:77:77:77:77"


@dataclass(frozen=True)
class World:
    config: OvercastConfig
    fabric: Fabric


@st.composite
def worlds(draw: st.DrawFn) -> World:
    sites = [f"s{i}" for i in range(draw(st.integers(2, 4)))]
    segments = {
        f"g{g}": draw(st.lists(st.sampled_from(sites), min_size=2, unique=True))
        for g in range(draw(st.integers(1, 3)))
    }
    lines = ["sites:"] + [
        f"  {s}: {{role: enterprise, underlay: 192.0.2.{i + 1}}}" for i, s in enumerate(sites)
    ]
    lines.append("segments:")
    lines += [
        f"  {g}: {{mode: l2, vni: {100 + i}, vlan: {10 + i}, sites: [{', '.join(members)}]}}"
        for i, (g, members) in enumerate(segments.items())
    ]
    mac_no = iter(range(1, 10_000))
    switches = {}
    for i, site in enumerate(sites):
        ports = []
        for g, members in segments.items():
            if site not in members:
                continue
            for h in range(draw(st.integers(0, 2))):
                macs = tuple(
                    f"02:00:00:00:{n >> 8:02x}:{n & 0xFF:02x}"
                    for n in [next(mac_no) for _ in range(draw(st.integers(0, 2)))]
                )
                ports.append(FabricPort(name=f"{g}h{h}", kind="access", segment=g, macs=macs))
            ports += [
                FabricPort(name=f"{g}t{peer}", kind="tunnel", segment=g, peer=peer)
                for peer in members
                if peer != site
            ]
        switches[site] = SiteSwitch(site=site, bridge="br", dpid=i + 1, ports=tuple(ports))
    return World(loads("\n".join(lines)), Fabric(switches=switches))


@settings(max_examples=80, deadline=None)
@given(world=worlds())
def test_every_plan_isolates_segments_and_keeps_split_horizon(world: World) -> None:
    known = {m for s in world.fabric.switches.values() for p in s.ports for m in p.macs}
    for site, switch in world.fabric.switches.items():
        ofports = {p.name: n for n, p in enumerate(switch.ports, start=1)}
        port_of = {n: p for p, n in ((p, ofports[p.name]) for p in switch.ports)}
        fake = FakeSwitch()
        fake.apply(program(plan_switch(world.config, world.fabric, site, ofports)))
        local = {m: ofports[p.name] for p in switch.ports if p.kind == "access" for m in p.macs}
        for number, port in port_of.items():
            sources = port.macs or (STRANGER,)
            for dst in (BROADCAST, UNKNOWN, *sorted(known)):
                out = fake.forward(number, dst, sources[0])
                assert number not in out
                assert all(port_of[o].segment == port.segment for o in out), (site, port, dst)
                if port.kind == "tunnel":
                    assert all(port_of[o].kind == "access" for o in out), (site, port, dst)
                owner = next((p for p in switch.ports if dst in p.macs), None)
                if owner is not None and owner.segment == port.segment and owner != port:
                    assert out == {local[dst]}, (site, port, dst)
