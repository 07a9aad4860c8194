"""The lab's desired state: a pure function from config + lab id to every namespace, link,
address and daemon the lab will have. No I/O here; `lab.build` applies it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge import plan as bridge_plan
from controller.fabric import Discovered
from lab import names
from overcast.config import L3Segment, OvercastConfig
from overcast.model import IPAddress

STATE_ROOT = Path("/run/overcast")
OPENFLOW_PORT = 6653  # IANA-assigned OpenFlow port


@dataclass(frozen=True)
class UnderlayPlan:
    """One underlay network: a namespace whose Linux bridge joins every site on it, the
    lab's stand-in for one provider's or ISP's network."""

    name: str  # the config's network name
    netns: str
    site_if: str  # each site's NIC on this network


@dataclass(frozen=True)
class SitePlan:
    name: str
    index: int
    netns: str
    dir: Path  # this site's OVS_RUNDIR / OVS_DBDIR / OVS_LOGDIR
    bridge: str
    datapath: str
    dpid: int
    underlay: IPAddress  # the address on the site's most preferred network
    underlays: dict[str, IPAddress]  # network -> address, in order of preference
    underlay_mtu: int
    mgmt: ipaddress.IPv4Interface
    # The bridge's plan for this site: WireGuard interface, VXLAN tunnels, inner MTUs.
    dataplane: bridge_plan.SitePlan


@dataclass(frozen=True)
class HostPlan:
    netns: str
    site: str
    segment: str
    number: int
    port: str  # the site switch's port facing this host
    mac: str
    address: ipaddress.IPv4Interface
    mtu: int

    @property
    def label(self) -> str:
        return f"{self.site}/{self.segment}-{self.number}"


# A routed host's LAN is a plain link between two kernels, as a real host's would be: MTU
# 1500, and the bridge clamps TCP's MSS to the tunnel's (bridge.mss).
LAN_MTU = 1500
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
GATEWAY, HOST = 1, 10  # a routed LAN's gateway (the site) and host: the prefix's 1st, 10th


@dataclass(frozen=True)
class RoutedHost:
    """A host on a routed (L3) segment: on a LAN behind its site, in a prefix the site
    announces; the site is its gateway and routes the other sites' prefixes into WireGuard
    (the bridge's plan). Not a port of the site switch: the controller never sees it."""

    netns: str
    site: str
    segment: str
    number: int
    port: str  # the site namespace's interface toward this LAN
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Interface  # the site's address on the LAN
    # In the site's first announced IPv6 prefix, if it announces one on this segment.
    address6: ipaddress.IPv6Interface | None = None
    gateway6: ipaddress.IPv6Interface | None = None
    mtu: int = LAN_MTU

    @property
    def label(self) -> str:
        return f"{self.site}/{self.segment}-{self.number}"

    @property
    def addresses(self) -> tuple[tuple[IPInterface, IPInterface], ...]:
        """Each of the host's addresses with its gateway, IPv4 first."""
        v6 = ((self.address6, self.gateway6),) if self.address6 and self.gateway6 else ()
        return ((self.address, self.gateway), *v6)


@dataclass(frozen=True)
class LabPlan:
    lab_id: str
    state_dir: Path
    underlays: tuple[UnderlayPlan, ...]
    controller_netns: str
    controller: ipaddress.IPv4Interface
    sites: tuple[SitePlan, ...]
    hosts: tuple[HostPlan, ...]  # on the L2 segments: ports of the site switches
    routed_hosts: tuple[RoutedHost, ...] = ()  # on the L3 segments' LANs

    @property
    def underlay_netns(self) -> str:
        """The namespace of the most preferred underlay network (the only one, usually)."""
        return self.underlays[0].netns

    def underlay(self, name: str) -> UnderlayPlan:
        return next(u for u in self.underlays if u.name == name)

    def site(self, name: str) -> SitePlan:
        return next(s for s in self.sites if s.name == name)

    def hosts_at(self, site: str) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.site == site)

    @property
    def controller_target(self) -> str:
        """The OVSDB Controller target each site switch dials."""
        return f"tcp:{self.controller.ip}:{OPENFLOW_PORT}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (
            *(u.netns for u in self.underlays),
            self.controller_netns,
            *(s.netns for s in self.sites),
            *(h.netns for h in self.hosts),
            *(h.netns for h in self.routed_hosts),
        )


class PlanError(ValueError):
    """The config cannot be built as a lab; the message names the fix."""


def plan_lab(
    config: OvercastConfig,
    lab_id: str,
    public_keys: Mapping[str, str],
    state_root: Path = STATE_ROOT,
) -> LabPlan:
    """Every site gets a namespace with its own OVS and the bridge's data plane (WireGuard
    named after the lab id, so it is unique on the machine); every L2 segment gets
    `lab.hosts_per_segment` hosts at each of its sites, at the inner MTU the bridge plan
    computed for that segment (what is left for a host frame inside VXLAN inside WireGuard);
    every L3 segment gets a routed host at each site that announces a prefix on it.
    `public_keys` maps each site to its WireGuard public key."""
    names.check_lab_id(lab_id)
    try:
        dataplanes = {
            site: bridge_plan.plan_site(config, site, public_keys, prefix=lab_id)
            for site in config.sites
        }
    except bridge_plan.PlanError as exc:
        raise PlanError(str(exc)) from None
    lab = config.lab
    mgmt_hosts = list(lab.management.hosts())
    if len(mgmt_hosts) < len(config.sites) + 1:
        raise PlanError(
            f"lab.management {lab.management} has room for {len(mgmt_hosts) - 1} sites but "
            f"there are {len(config.sites)}; use a larger prefix"
        )
    state_dir = state_root / lab_id
    sites = tuple(
        SitePlan(
            name=name,
            index=i,
            netns=names.site_netns(lab_id, name),
            dir=state_dir / "sites" / name,
            bridge=site.switch.bridge,
            datapath=site.switch.datapath,
            dpid=config.dpid(name),
            underlay=next(iter(config.addresses(name).values())),
            underlays=config.addresses(name),
            underlay_mtu=site.underlay_mtu,
            mgmt=ipaddress.IPv4Interface(f"{mgmt_hosts[i + 1]}/{lab.management.prefixlen}"),
            dataplane=dataplanes[name],
        )
        for i, (name, site) in enumerate(config.sites.items())
    )
    return LabPlan(
        lab_id=lab_id,
        state_dir=state_dir,
        underlays=tuple(
            UnderlayPlan(n, names.underlay_netns(lab_id, named), names.wan_if(named))
            for n, named in ((n, n if config.underlays else None) for n in config.underlay_names())
        ),
        controller_netns=names.controller_netns(lab_id),
        controller=ipaddress.IPv4Interface(f"{mgmt_hosts[0]}/{lab.management.prefixlen}"),
        sites=sites,
        hosts=_plan_hosts(config, lab_id, sites),
        routed_hosts=plan_routed_hosts(config, lab_id),
    )


def _plan_hosts(
    config: OvercastConfig, lab_id: str, sites: tuple[SitePlan, ...]
) -> tuple[HostPlan, ...]:
    per = config.lab.hosts_per_segment
    subnets = ipaddress.IPv4Network(config.lab.hosts).subnets(new_prefix=24)
    index = {s.name: s.index for s in sites}
    hosts = []
    for seg_index, (seg_name, seg) in enumerate(config.l2_segments().items()):
        subnet = next(subnets, None)
        if subnet is None:
            raise PlanError(
                f"lab.hosts {config.lab.hosts} has no /24 left for segments.{seg_name}; "
                "use a larger prefix (one /24 per L2 segment)"
            )
        for site in seg.sites:
            mtu = next(
                a.inner_mtu for a in sites[index[site]].dataplane.segments if a.segment == seg_name
            )
            for number in range(1, per + 1):
                # Host addresses are stable per site: .<8 * site index + number>.
                offset = 8 * index[site] + number
                if offset >= subnet.num_addresses - 1:
                    raise PlanError(
                        f"too many sites for one /24 of lab hosts at sites.{site}; "
                        "the lab supports up to 31 sites"
                    )
                hosts.append(
                    HostPlan(
                        netns=names.host_netns(lab_id, site, seg_name, number),
                        site=site,
                        segment=seg_name,
                        number=number,
                        port=names.access_port(seg_name, number),
                        mac=host_mac(lab_id, seg_index, index[site], number),
                        address=ipaddress.IPv4Interface(f"{subnet[offset]}/24"),
                        mtu=mtu,
                    )
                )
    return tuple(hosts)


def plan_routed_hosts(config: OvercastConfig, lab_id: str) -> tuple[RoutedHost, ...]:
    """One host per site and L3 segment, in the first IPv4 prefix the site announces on
    it (gateway the prefix's first address, host its tenth), and likewise in its first IPv6
    prefix if it announces one (a /28, or /124, is the smallest with a tenth address). A
    site announcing no such IPv4 prefix there gets none, nor does one announcing only IPv6:
    Mininet's `pingall` is IPv4 only, and the lab's hosts are the same as Mininet's."""
    reserved_ranges = (("lab.hosts", config.lab.hosts), ("lab.management", config.lab.management))
    hosts = []
    for seg_name, seg in config.segments.items():
        if not isinstance(seg, L3Segment):
            continue
        for site, prefixes in seg.announce.items():
            for prefix, (what, reserved) in itertools.product(prefixes, reserved_ranges):
                if prefix.version == reserved.version and prefix.overlaps(reserved):
                    raise PlanError(
                        f"segments.{seg_name}.announce.{site}: {prefix} overlaps {what} "
                        f"{reserved}, which the lab uses itself; set {what} to a range "
                        "no segment routes"
                    )
            v4 = [p for p in prefixes if p.version == 4 and p.num_addresses > HOST]
            if not v4:
                continue
            v6 = [p for p in prefixes if p.version == 6 and p.num_addresses > HOST]
            hosts.append(
                RoutedHost(
                    netns=names.host_netns(lab_id, site, seg_name, 1),
                    site=site,
                    segment=seg_name,
                    number=1,
                    port=names.lan_port(seg_name),
                    address=ipaddress.IPv4Interface(_nth(v4[0], HOST)),
                    gateway=ipaddress.IPv4Interface(_nth(v4[0], GATEWAY)),
                    address6=ipaddress.IPv6Interface(_nth(v6[0], HOST)) if v6 else None,
                    gateway6=ipaddress.IPv6Interface(_nth(v6[0], GATEWAY)) if v6 else None,
                )
            )
    return tuple(hosts)


def _nth(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network, n: int) -> str:
    return f"{prefix[n]}/{prefix.prefixlen}"


def host_mac(lab_id: str, segment_index: int, site_index: int, number: int) -> str:
    """A stable, locally administered unicast MAC (IEEE 802: bit 1 of octet 0 set, bit 0
    clear), distinct per lab so frames from two labs are never confused in a capture."""
    tag = hashlib.sha256(lab_id.encode()).digest()[:2]
    octets = [0x02, *tag, segment_index & 0xFF, site_index & 0xFF, number & 0xFF]
    return ":".join(f"{o:02x}" for o in octets)


def discovered(plan: LabPlan) -> dict[str, Discovered]:
    """What the controller reads from each site's OVSDB once the lab is built: the bridge's
    datapath id and each host port tagged with its segment and its host's MAC."""
    return {
        site.name: Discovered(
            site.dpid,
            {h.port: h.segment for h in plan.hosts_at(site.name)},
            {h.port: h.mac for h in plan.hosts_at(site.name)},
        )
        for site in plan.sites
    }
