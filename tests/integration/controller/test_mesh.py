"""Three site switches in a full mesh, one controller: split horizon keeps the triangle
loop-free, and unicast takes only the tunnel toward the host's site.

Each "tunnel" is a veth between two switch namespaces, so this checks the controller's
forwarding alone (the bridge's WireGuard + VXLAN has its own tests).

    hq ---- branch        every switch: one finance host, two tunnel ports,
      \\    /              and a management veth to the controller namespace
      cloud
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pytest

from controller.ovsdb import Ovsdb
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from tests.conftest import require_binaries
from tests.integration.controller.netns import (
    ControllerProcess,
    Namespaces,
    OvsSwitch,
    controller,
    ping,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

SITES = ("hq", "branch", "cloud")
CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
  cloud:  {role: provider,   underlay: 192.0.2.3}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}
"""


def mac(i: int) -> str:
    return f"02:00:00:00:01:{i + 1:02x}"


def address(i: int) -> str:
    return f"192.0.2.{11 + i}"


@dataclass
class Mesh:
    switches: dict[str, OvsSwitch]
    bridge: str
    hosts: dict[str, str]  # site -> host namespace
    tunnel: dict[tuple[str, str], str]  # (site, peer) -> port name at site
    ctl: ControllerProcess

    def tx_packets(self, site: str, peer: str) -> int:
        port = self.tunnel[site, peer]
        dump = self.switches[site].ofctl("dump-ports", self.bridge, port)
        found = re.search(r"tx pkts=(\d+)", dump)
        assert found, dump
        return int(found.group(1))


@pytest.fixture
def mesh(namespaces: Namespaces, prefix: str, tmp_path: Path) -> Iterator[Mesh]:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-ofctl", "ethtool", "ping")
    ctl_ns = namespaces.add(f"{prefix}-ctl")
    switches: dict[str, OvsSwitch] = {}
    try:
        for site in SITES:
            switches[site] = OvsSwitch(namespaces.add(f"{prefix}-{site}"))
        yield from _wire(switches, namespaces, ctl_ns, prefix, tmp_path)
    finally:
        for sw in switches.values():
            sw.close()


def _wire(
    switches: dict[str, OvsSwitch], namespaces: Namespaces, ctl_ns: str, prefix: str, tmp: Path
) -> Iterator[Mesh]:
    bridge = f"{prefix}br"
    tunnel = {}
    for a, b in combinations(SITES, 2):
        tunnel[a, b], tunnel[b, a] = f"{prefix}{a[0]}{b[0]}", f"{prefix}{b[0]}{a[0]}"
        namespaces.veth(tunnel[a, b], switches[a].netns, tunnel[b, a], switches[b].netns)
    hosts, fabric_switches, targets = {}, {}, []
    for i, site in enumerate(SITES):
        sw = switches[site]
        # Management: a /30 per switch toward the controller namespace.
        targets.append(namespaces.management_link(prefix, i, sw.netns, ctl_ns))
        host_port = f"{prefix}h{i}"
        hosts[site] = namespaces.host(
            f"{prefix}-h{i}", sw.netns, host_port, mac(i), f"{address(i)}/24"
        )
        ports = [FabricPort(name=host_port, kind="access", segment="finance", macs=(mac(i),))]
        with Ovsdb(sw.remote) as db:
            db.ensure_bridge(bridge, dpid=i + 1)
            db.ensure_port(bridge, host_port)
            for peer in SITES:
                if peer != site:
                    db.ensure_port(bridge, tunnel[site, peer])
                    ports.append(
                        FabricPort(
                            name=tunnel[site, peer], kind="tunnel", segment="finance", peer=peer
                        )
                    )
        fabric_switches[site] = SiteSwitch(site=site, bridge=bridge, dpid=i + 1, ports=tuple(ports))
    fabric = Fabric(switches=fabric_switches)
    with controller(ctl_ns, CONFIG, fabric, tmp, "0.0.0.0:6653") as ctl:
        # Pointed at the controller once it listens, each switch connects on its first try.
        for i, site in enumerate(SITES):
            with Ovsdb(switches[site].remote) as db:
                db.ensure_bridge(bridge, dpid=i + 1, controllers=[targets[i]])
        ctl.wait_log("programmed (full)", "every switch to be programmed", count=len(SITES))
        yield Mesh(switches, bridge, hosts, tunnel, ctl)


def test_every_site_reaches_every_other_without_a_loop(mesh: Mesh) -> None:
    for a, b in combinations(range(len(SITES)), 2):
        assert ping(mesh.hosts[SITES[a]], address(b)), mesh.ctl.log.read_text()
    # Each ping started with one ARP broadcast. Had a switch flooded from one tunnel into
    # another, that broadcast would circle the triangle for ever: thousands of packets.
    for site, peer in mesh.tunnel:
        assert mesh.tx_packets(site, peer) < 50, (site, peer)


def test_unicast_takes_only_the_tunnel_toward_the_hosts_site(mesh: Mesh) -> None:
    hq, branch = mesh.hosts["hq"], SITES.index("branch")
    before = mesh.tx_packets("hq", "cloud")
    assert ping(hq, address(branch), count=10)
    # The cloud tunnel saw at most the ARP broadcast, never the ten echo requests.
    assert mesh.tx_packets("hq", "cloud") - before <= 2
    assert mesh.tx_packets("hq", "branch") >= 10
