"""A three-site config and fabric the controller unit tests share.

hq holds two finance hosts and one hr host; branch and cloud-a hold one host per segment
they carry. Tunnel ports follow the bridge's naming: one per (segment, peer site).
"""

from __future__ import annotations

from overcast.config import OvercastConfig, loads
from overcast.fabric import Fabric, FabricPort, SiteSwitch

CONFIG = """
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2}
  cloud-a: {role: provider,   underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud-a]}
  hr:      {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}
  apps:    {mode: l3, prefixes: [10.20.0.0/16], sites: [hq, branch]}
"""

H1, H2, H3 = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:02:01"
BRANCH_FIN, BRANCH_HR, CLOUD_FIN = "02:00:00:00:01:11", "02:00:00:00:02:11", "02:00:00:00:01:21"

# hq's OpenFlow port numbers, as the switch would report them.
HQ_PORTS = {"h1": 1, "h2": 2, "h3": 3, "vx100-1": 11, "vx100-2": 12, "vx200-1": 21}


def config() -> OvercastConfig:
    return loads(CONFIG)


def access(name: str, segment: str, *macs: str) -> FabricPort:
    return FabricPort(name=name, kind="access", segment=segment, macs=macs)


def tunnel(name: str, segment: str, peer: str | None) -> FabricPort:
    return FabricPort(name=name, kind="tunnel", segment=segment, peer=peer)


def fabric() -> Fabric:
    return Fabric(
        switches={
            "hq": SiteSwitch(
                site="hq",
                bridge="br-overcast",
                dpid=1,
                ports=(
                    access("h1", "finance", H1),
                    access("h2", "finance", H2),
                    access("h3", "hr", H3),
                    tunnel("vx100-1", "finance", "branch"),
                    tunnel("vx100-2", "finance", "cloud-a"),
                    tunnel("vx200-1", "hr", "branch"),
                ),
            ),
            "branch": SiteSwitch(
                site="branch",
                bridge="br-overcast",
                dpid=2,
                ports=(
                    access("b1", "finance", BRANCH_FIN),
                    access("b2", "hr", BRANCH_HR),
                    tunnel("vx100-0", "finance", "hq"),
                    tunnel("vx100-2", "finance", "cloud-a"),
                    tunnel("vx200-0", "hr", "hq"),
                ),
            ),
            "cloud-a": SiteSwitch(
                site="cloud-a",
                bridge="br-overcast",
                dpid=3,
                ports=(
                    access("c1", "finance", CLOUD_FIN),
                    tunnel("vx100-0", "finance", "hq"),
                    tunnel("vx100-1", "finance", "branch"),
                ),
            ),
        }
    )
