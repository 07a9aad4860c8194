"""A site's data plane as data: its WireGuard interface, peers, VXLAN tunnels and MTUs.

`plan_site()` is pure: config + site + public keys in, `SitePlan` out. `bridge.apply` makes
the kernel match it. Numbering is deterministic from the config alone, so every site
computes the same overlay addresses and VXLAN ports for a pair without talking to the other.

- Site i (in config order) gets overlay address pool[i + 1].
- Each L2 segment gets one point-to-point VXLAN device per peer site: the controller floods
  with split horizon and learns MACs per tunnel port, which a multipoint device would hide.
- Two kernel VXLAN devices in one namespace cannot share VNI and UDP port (the kernel
  refuses: "A VXLAN device with the specified VNI already exists"), so the tunnels to
  different peers differ by port: the pair of sites i < j uses
  vxlan_port_base + j*(j-1)/2 + i, a numbering that is stable when sites are appended.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping

from pydantic import Field

from bridge import mtu
from bridge.keys import KeyStoreError, check_public_key
from controller.fabric import FabricPort
from overcast.config import L2Segment, OvercastConfig
from overcast.model import IPAddress, IPNetwork, Model

IFNAMSIZ = 15  # Linux interface names: IFNAMSIZ (16) minus the terminating NUL
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class PlanError(Exception):
    """The plan cannot be computed; the message names the input and the fix."""


class WireGuardPeer(Model):
    site: str
    public_key: str
    endpoint: str  # "192.0.2.2:51820" or "[2001:db8::2]:51820", as wg(8) writes it
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int


class WireGuardInterface(Model):
    """The site's one WireGuard interface. Its name is machine-unique: wireguard-go's UAPI
    socket /var/run/wireguard/<name>.sock is shared by all network namespaces."""

    name: str = Field(max_length=IFNAMSIZ)
    public_key: str
    listen_port: int
    address: IPAddress
    prefixlen: int  # of the overlay pool, so the pool is one connected route on this interface
    mtu: int
    peers: tuple[WireGuardPeer, ...]


class VxlanTunnel(Model):
    """One point-to-point VXLAN device: this site to one peer for one L2 segment."""

    name: str = Field(max_length=IFNAMSIZ)
    segment: str
    peer: str
    vni: int
    local: IPAddress
    remote: IPAddress
    dstport: int
    mtu: int


class SegmentAttachment(Model):
    """An L2 segment at this site: its tunnels and the MTU its hosts must use."""

    segment: str
    vni: int
    vlan: int
    inner_mtu: int
    # RFC 6691 section 2: what to clamp TCP SYNs to when hosts cannot be set to inner_mtu.
    mss_ipv4: int
    mss_ipv6: int
    tunnels: tuple[VxlanTunnel, ...]


class SitePlan(Model):
    site: str
    switch: str  # the site's OVS bridge, which the tunnel ports join
    wireguard: WireGuardInterface
    segments: tuple[SegmentAttachment, ...]

    def tunnels(self) -> Iterator[VxlanTunnel]:
        for seg in self.segments:
            yield from seg.tunnels

    def fabric_ports(self) -> tuple[FabricPort, ...]:
        """What the controller needs to know about the tunnel ports this plan creates."""
        return tuple(
            FabricPort(name=t.name, kind="tunnel", segment=t.segment, peer=t.peer)
            for t in self.tunnels()
        )


def wireguard_name(prefix: str, site_index: int) -> str:
    """`<prefix>wg<index>`: the caller's prefix keeps names unique across the machine."""
    name = f"{prefix}wg{site_index}"
    if not _PREFIX_RE.match(prefix) or len(name) > IFNAMSIZ:
        raise PlanError(
            f"interface prefix {prefix!r} gives WireGuard interface name {name!r}; use a "
            f"prefix of lower-case letters, digits or '-' of at most "
            f"{IFNAMSIZ - len(name) + len(prefix)} characters"
        )
    return name


def vxlan_name(vni: int, peer_index: int) -> str:
    """`vx<vni>-<peer index>`: local to the site's namespace, at most 14 characters."""
    return f"vx{vni}-{peer_index}"


def overlay_address(config: OvercastConfig, site: str) -> IPAddress:
    return config.bridge.overlay_pool[list(config.sites).index(site) + 1]


def vxlan_port(config: OvercastConfig, a: str, b: str) -> int:
    """The UDP port of the VXLAN tunnels between sites `a` and `b` (same from both ends)."""
    order = list(config.sites)
    i, j = sorted((order.index(a), order.index(b)))
    return config.bridge.vxlan_port_base + j * (j - 1) // 2 + i


def peers_of(config: OvercastConfig, site: str) -> list[str]:
    """Every other site sharing a segment (L2 or L3) with `site`, in config order."""
    shared = {s for seg in config.segments_at(site).values() for s in seg.sites}
    return [s for s in config.sites if s in shared and s != site]


def plan_site(
    config: OvercastConfig, site: str, public_keys: Mapping[str, str], *, prefix: str
) -> SitePlan:
    """The data plane of `site`. `public_keys` maps site names to base64 public keys and
    must hold this site and every peer; `prefix` starts the WireGuard interface name."""
    if site not in config.sites:
        raise PlanError(f"unknown site {site!r}; use one of: {', '.join(config.sites)}")
    order = list(config.sites)
    here = config.sites[site]
    bridge = config.bridge
    wg_mtu = mtu.wireguard_mtu(here.underlay_mtu, here.underlay.version)
    peers = peers_of(config, site)
    keys = {s: _public_key(public_keys, s) for s in (site, *peers)}
    local = overlay_address(config, site)
    host_bits = 32 if local.version == 4 else 128

    wg_peers = []
    for peer in peers:
        there = config.sites[peer]
        host = f"[{there.underlay}]" if there.underlay.version == 6 else str(there.underlay)
        wg_peers.append(
            WireGuardPeer(
                site=peer,
                public_key=keys[peer],
                endpoint=f"{host}:{there.wireguard_port}",
                allowed_ips=(ipaddress.ip_network(f"{overlay_address(config, peer)}/{host_bits}"),),
                persistent_keepalive=bridge.persistent_keepalive,
            )
        )

    segments = []
    for seg_name, seg in config.segments_at(site).items():
        if not isinstance(seg, L2Segment):
            continue
        # One MTU per segment: a frame must fit the narrowest path between any two sites.
        path_mtu = min(
            mtu.wireguard_mtu(config.sites[s].underlay_mtu, config.sites[s].underlay.version)
            for s in seg.sites
        )
        inner = mtu.inner_mtu(path_mtu, local.version, dot1q_inside=bridge.inner_vlan_tag)
        tunnels = tuple(
            VxlanTunnel(
                name=vxlan_name(seg.vni, order.index(peer)),
                segment=seg_name,
                peer=peer,
                vni=seg.vni,
                local=local,
                remote=overlay_address(config, peer),
                dstport=vxlan_port(config, site, peer),
                mtu=inner,
            )
            for peer in peers
            if peer in seg.sites
        )
        segments.append(
            SegmentAttachment(
                segment=seg_name,
                vni=seg.vni,
                vlan=seg.vlan,
                inner_mtu=inner,
                mss_ipv4=mtu.tcp_mss(inner, 4),
                mss_ipv6=mtu.tcp_mss(inner, 6),
                tunnels=tunnels,
            )
        )

    return SitePlan(
        site=site,
        switch=here.switch.bridge,
        wireguard=WireGuardInterface(
            name=wireguard_name(prefix, order.index(site)),
            public_key=keys[site],
            listen_port=here.wireguard_port,
            address=local,
            prefixlen=bridge.overlay_pool.prefixlen,
            mtu=wg_mtu,
            peers=tuple(wg_peers),
        ),
        segments=tuple(segments),
    )


def _public_key(public_keys: Mapping[str, str], site: str) -> str:
    if site not in public_keys:
        raise PlanError(
            f"no public key for site {site!r}; generate it with "
            f"bridge.keys.KeyStore(DIR).ensure({site!r}) and pass it in"
        )
    try:
        return check_public_key(public_keys[site], f"public key of site {site!r}")
    except KeyStoreError as exc:
        raise PlanError(str(exc)) from None
