"""Hosts on the routed (L3) segments of a built lab, for scenarios: at each site, one host
namespace per IPv4 prefix the site announces, on a LAN behind the site's namespace (the
site is its gateway and routes the other sites' prefixes into WireGuard, as the bridge
plans). The lab itself builds hosts for L2 segments only.

Every namespace is recorded in the lab's registry before it is made and carries the lab id,
so the lab's teardown removes it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab import names, netns
from lab.plan import LabPlan
from lab.registry import Registry
from overcast.config import L3Segment, OvercastConfig

LAN_MTU = 1500  # what a real host has; the bridge clamps TCP MSS to the tunnel's


@dataclass(frozen=True)
class LanHost:
    site: str
    segment: str
    netns: str
    port: str  # the site namespace's interface toward this LAN
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Interface  # the site's address on the LAN

    @property
    def label(self) -> str:
        return f"{self.site}/{self.segment}-lan"


def plan_lan_hosts(config: OvercastConfig, plan: LabPlan) -> list[LanHost]:
    """Pure: one host per site and L3 segment, in the site's first announced IPv4 prefix
    (gateway the prefix's first address, host its tenth)."""
    hosts = []
    for name, seg in config.segments.items():
        if not isinstance(seg, L3Segment):
            continue
        for site, prefixes in seg.announce.items():
            v4 = [p for p in prefixes if p.version == 4 and p.num_addresses >= 16]
            if not v4:
                continue
            prefix = ipaddress.IPv4Network(v4[0])
            hosts.append(
                LanHost(
                    site=site,
                    segment=name,
                    netns=names.host_netns(plan.lab_id, site, name, 1),
                    port=names.check_ifname(f"lan-{name}"),
                    address=ipaddress.IPv4Interface(f"{prefix[10]}/{prefix.prefixlen}"),
                    gateway=ipaddress.IPv4Interface(f"{prefix[1]}/{prefix.prefixlen}"),
                )
            )
    return hosts


def build(plan: LabPlan, host: LanHost) -> None:
    site = plan.site(host.site)
    netns.ensure(Registry(plan.state_dir).netns(host.netns))
    netns.veth(site.netns, host.port, host.netns, names.HOST_IF, LAN_MTU)
    netns.up(site.netns, host.port, host.gateway)
    netns.up(host.netns, names.HOST_IF, host.address)
    netns.run(host.netns, ["ip", "route", "replace", "default", "via", str(host.gateway.ip)])
