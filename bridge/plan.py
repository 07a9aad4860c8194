"""A site's data plane as data: its WireGuard interface, peers, VXLAN tunnels and MTUs.

`plan_site()` is pure: config + site + public keys in, `SitePlan` out. `bridge.apply` makes
the kernel match it. Numbering is deterministic from the config alone, so every site
computes the same overlay addresses and VXLAN ports for a pair without talking to the other.

- A site has one WireGuard interface per underlay network it is on (network k, in the
  config's order of preference, listens on wireguard_port + k), with every site it shares
  a segment with on that network as a peer. A path is one site pair on one network.
- Site i (in config order) gets overlay address pool_k[i + 1] on network k, where pool_0 is
  bridge.overlay_pool and pool_k the k-th block of its size after it.
- Each L2 segment gets one point-to-point VXLAN device per path: the controller floods
  with split horizon and learns MACs per tunnel port, which a multipoint device would hide.
- Two kernel VXLAN devices in one namespace cannot share VNI and UDP port (the kernel
  refuses: "A VXLAN device with the specified VNI already exists"), so the tunnels of
  different paths differ by port: the pair of sites i < j on network k uses
  vxlan_port_base + k*P + j*(j-1)/2 + i (P: the number of site pairs). The first network's
  ports do not depend on how many networks there are, so adding a second provider leaves
  the first one's tunnels as they were.
- A peer reached over two or more paths gets OVS BFD on each path's tunnel port
  (bridge.failover), which the controller's fast-failover groups watch.
- A peer that shares only routed (L3) segments with the site has no tunnel port to run BFD
  on, so each of its paths gets one of its own: a VXLAN device with VNI 0 (no segment
  has it: segment VNIs start at 1) on the switch, carrying BFD and nothing else. The
  controller never learns of it (it is no fabric port), so no frame is forwarded into it;
  the site's path watcher follows its sessions to move the routes, as it does for a peer
  with an L2 segment (bridge.watch).
- Each L3 segment routes the prefixes other sites announce into the WireGuard interface of
  the most preferred network shared with the announcing site; WireGuard's AllowedIPs pick
  the peer (cryptokey routing). The prefix is in the peer's AllowedIPs on every network the
  two share, so the site's path watcher can move the route with the peer's active path.
  All L3 segments share one routing table per site, so forwarding between two of them is
  refused by a filter instead (`bridge.isolation`).
- TCP MSS is clamped per path (RFC 6691 section 2; `bridge.mss`): a routed prefix by the
  narrower WireGuard MTU of its two ends, an L2 tunnel by its VXLAN MTU.
- A revoked site is nobody's peer: its key, prefixes and tunnels leave every plan.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterator, Mapping

from pydantic import Field

from bridge import mtu
from bridge.keys import KeyStoreError, check_public_key
from overcast.config import L2Segment, L3Segment, OvercastConfig
from overcast.fabric import FabricPort
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
    # The narrower WireGuard MTU of the two ends on this network: the largest IP packet the
    # tunnel carries both ways (shown by `bridge status` as the tunnel's effective MTU).
    path_mtu: int = 0


class WireGuardInterface(Model):
    """The site's WireGuard interface on one underlay network. Its name is machine-unique:
    wireguard-go's UAPI socket /var/run/wireguard/<name>.sock is shared by all network
    namespaces."""

    name: str = Field(max_length=IFNAMSIZ)
    underlay: str  # the underlay network its peers are reached over
    public_key: str
    listen_port: int
    address: IPAddress
    prefixlen: int  # of the overlay pool, so the pool is one connected route on this interface
    mtu: int
    peers: tuple[WireGuardPeer, ...]


class VxlanTunnel(Model):
    """One point-to-point VXLAN device: this site to one peer for one L2 segment, over one
    underlay network (one path); or, with no segment, a path's BFD session alone (a peer
    reached only by routed segments)."""

    name: str = Field(max_length=IFNAMSIZ)
    segment: str | None  # None: BFD only (VNI 0), no segment's frames
    peer: str
    underlay: str
    # OVS BFD settings for the tunnel's switch port (Interface.bfd) when the peer has more
    # than one path, so a fast-failover group can watch it; empty for a peer's only path.
    bfd: dict[str, str] = {}
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


class RoutedPrefix(Model):
    """A prefix another site announces on an L3 segment, routed into the WireGuard interface
    toward `peer`, with TCP SYNs clamped to the narrower MTU of the two ends."""

    segment: str
    prefix: IPNetwork
    peer: str
    interface: str  # the WireGuard interface of the most preferred shared network
    # Every network the two share, preferred first, and this site's WireGuard interface on
    # each: the prefix rides each one's AllowedIPs, so it can move to any of them
    # (bridge.watch moves it with the peer's active path).
    underlays: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    path_mtu: int  # the narrowest WireGuard MTU of this site and `peer` on those networks
    mss: int  # RFC 6691 section 2, for the prefix's family

    def interface_on(self, underlay: str) -> str | None:
        """This site's WireGuard interface carrying the prefix over `underlay`."""
        pairs = dict(zip(self.underlays, self.interfaces, strict=True))
        return pairs.get(underlay)


class RoutedSegment(Model):
    """An L3 segment's address space: traffic between two of them is refused at every site
    (bridge.isolation), as the switches keep L2 segments apart."""

    segment: str
    prefixes: tuple[IPNetwork, ...]


class SitePlan(Model):
    site: str
    switch: str  # the site's OVS bridge, which the tunnel ports join
    # One per underlay network the site is on, in the config's order of preference.
    wireguard_interfaces: tuple[WireGuardInterface, ...] = Field(min_length=1)
    segments: tuple[SegmentAttachment, ...]
    routes: tuple[RoutedPrefix, ...] = ()
    announced: tuple[IPNetwork, ...] = ()  # what this site hosts on its L3 segments
    # BFD-only tunnels, one per path to each peer the site shares only L3 segments with.
    liveness: tuple[VxlanTunnel, ...] = ()
    # Every L3 segment of the config when the site is on one (it routes between them).
    routed_segments: tuple[RoutedSegment, ...] = ()

    @property
    def wireguard(self) -> WireGuardInterface:
        """The interface on the site's most preferred network: its only one unless the
        config names several underlays."""
        return self.wireguard_interfaces[0]

    def tunnels(self) -> Iterator[VxlanTunnel]:
        """The L2 segments' tunnels."""
        for seg in self.segments:
            yield from seg.tunnels

    def vxlan_devices(self) -> Iterator[VxlanTunnel]:
        """Every VXLAN device of the site, the BFD-only ones last: what joins the switch."""
        yield from self.tunnels()
        yield from self.liveness

    def fabric_ports(self) -> tuple[FabricPort, ...]:
        """What the controller needs to know about the tunnel ports this plan creates (the
        segments' only: a BFD-only port forwards nothing)."""
        return tuple(
            FabricPort(
                name=t.name, kind="tunnel", segment=seg.segment, peer=t.peer, underlay=t.underlay
            )
            for seg in self.segments
            for t in seg.tunnels
        )


def wireguard_name(prefix: str, site_index: int, underlay_index: int = 0) -> str:
    """`<prefix>wg<index>` on the first underlay network, `<prefix>wg<index>-<k>` on the
    k-th: the caller's prefix keeps names unique across the machine."""
    name = f"{prefix}wg{site_index}" + (f"-{underlay_index}" if underlay_index else "")
    if not _PREFIX_RE.match(prefix) or len(name) > IFNAMSIZ:
        raise PlanError(
            f"interface prefix {prefix!r} gives WireGuard interface name {name!r}; use a "
            f"prefix of lower-case letters, digits or '-' of at most "
            f"{IFNAMSIZ - len(name) + len(prefix)} characters"
        )
    return name


def vxlan_name(vni: int, peer_index: int, underlay_index: int = 0) -> str:
    """`vx<vni>-<peer index>` on the first underlay network, `vx<vni>-<peer index>-<k>` on
    the k-th: local to the site's namespace."""
    name = f"vx{vni}-{peer_index}" + (f"-{underlay_index}" if underlay_index else "")
    if len(name) > IFNAMSIZ:
        raise PlanError(
            f"VXLAN device name {name!r} is longer than {IFNAMSIZ} characters; use a "
            "smaller VNI, fewer sites before this peer or fewer underlay networks"
        )
    return name


def liveness_name(peer_index: int, underlay_index: int = 0) -> str:
    """`bfd<peer index>` on the first underlay network, `bfd<peer index>-<k>` on the k-th:
    the BFD-only tunnel of a path, local to the site's namespace."""
    return f"bfd{peer_index}" + (f"-{underlay_index}" if underlay_index else "")


def overlay_address(config: OvercastConfig, site: str, underlay: str | None = None) -> IPAddress:
    """`site`'s overlay address on `underlay` (default: the first network)."""
    k = config.underlay_names().index(underlay) if underlay else 0
    return config.bridge.overlay_pool_of(k)[list(config.sites).index(site) + 1]


def vxlan_port(config: OvercastConfig, a: str, b: str, underlay: str | None = None) -> int:
    """The UDP port of the VXLAN tunnels between sites `a` and `b` on `underlay` (default:
    the first network); the same from both ends."""
    order = list(config.sites)
    i, j = sorted((order.index(a), order.index(b)))
    k = config.underlay_names().index(underlay) if underlay else 0
    pairs = len(order) * (len(order) - 1) // 2
    return config.bridge.vxlan_port_base + k * pairs + j * (j - 1) // 2 + i


def peers_of(
    config: OvercastConfig, site: str, revoked: Collection[str] = frozenset()
) -> list[str]:
    """Every other site sharing a segment (L2 or L3) with `site`, in config order, less
    the `revoked` ones."""
    shared = {s for seg in config.segments_at(site).values() for s in seg.sites}
    return [s for s in config.sites if s in shared and s != site and s not in revoked]


def plan_site(
    config: OvercastConfig,
    site: str,
    public_keys: Mapping[str, str],
    *,
    prefix: str,
    revoked: Collection[str] = frozenset(),
) -> SitePlan:
    """The data plane of `site`. `public_keys` maps site names to base64 public keys and
    must hold this site and every peer; `prefix` starts the WireGuard interface name.
    `revoked` sites (`bridge.keys.KeyStore.revoked`) are left out as peers."""
    if site not in config.sites:
        raise PlanError(f"unknown site {site!r}; use one of: {', '.join(config.sites)}")
    if site in revoked:
        raise PlanError(
            f"site {site!r} is revoked; give it a new key with "
            f"'overcast bridge keys rotate CONFIG {site} --keys DIR' to bring it back"
        )
    here = config.sites[site]
    bridge = config.bridge
    peers = peers_of(config, site, revoked)
    keys = {s: _public_key(public_keys, s) for s in (site, *peers)}
    routes = _routes(config, site, peers, prefix)
    interfaces = tuple(
        _wireguard(config, site, network, peers, keys, prefix, routes)
        for network in config.addresses(site)
    )
    segments = []
    for seg_name, seg in config.segments_at(site).items():
        if not isinstance(seg, L2Segment):
            continue
        # One MTU per segment: a frame must fit the narrowest path between any two sites.
        path_mtu = min(
            mtu.wireguard_mtu(config.sites[s].underlay_mtu, a.version)
            for s in seg.sites
            for a in config.addresses(s).values()
        )
        local_version = overlay_address(config, site).version
        inner = mtu.inner_mtu(path_mtu, local_version, dot1q_inside=bridge.inner_vlan_tag)
        tunnels = [
            VxlanTunnel(
                name=name,
                segment=seg_name,
                peer=peer,
                underlay=network,
                vni=seg.vni,
                local=overlay_address(config, site, network),
                remote=overlay_address(config, peer, network),
                dstport=vxlan_port(config, site, peer, network),
                mtu=inner,
                bfd=bridge.failover.bfd_settings() if paths > 1 else {},
            )
            for name, peer, network, paths in _tunnel_paths(config, site, seg, peers)
        ]
        segments.append(
            SegmentAttachment(
                segment=seg_name,
                vni=seg.vni,
                vlan=seg.vlan,
                inner_mtu=inner,
                mss_ipv4=mtu.tcp_mss(inner, 4),
                mss_ipv6=mtu.tcp_mss(inner, 6),
                tunnels=tuple(tunnels),
            )
        )

    return SitePlan(
        site=site,
        switch=here.switch.bridge,
        wireguard_interfaces=interfaces,
        segments=tuple(segments),
        routes=routes,
        liveness=_liveness(config, site, peers),
        announced=tuple(
            p
            for seg in config.segments_at(site).values()
            if isinstance(seg, L3Segment)
            for p in seg.announce.get(site, ())
        ),
        routed_segments=_routed_segments(config, site),
    )


def _routed_segments(config: OvercastConfig, site: str) -> tuple[RoutedSegment, ...]:
    routed = {n: s for n, s in config.segments.items() if isinstance(s, L3Segment)}
    if not any(site in s.sites for s in routed.values()):
        return ()
    return tuple(RoutedSegment(segment=n, prefixes=tuple(s.prefixes)) for n, s in routed.items())


def _tunnel_paths(
    config: OvercastConfig, site: str, seg: L2Segment, peers: list[str]
) -> Iterator[tuple[str, str, str, int]]:
    """(device name, peer, underlay network, the peer's number of paths) of each VXLAN
    tunnel of `seg` from `site` toward `peers`."""
    order, networks = list(config.sites), config.underlay_names()
    for peer in (p for p in peers if p in seg.sites):
        paths = config.shared_underlays(site, peer)
        for network in paths:
            name = vxlan_name(seg.vni, order.index(peer), networks.index(network))
            yield name, peer, network, len(paths)


LIVENESS_VNI = 0  # no segment's: the config's VNIs start at 1


def _liveness(config: OvercastConfig, site: str, peers: list[str]) -> tuple[VxlanTunnel, ...]:
    """A BFD-only tunnel per path toward each peer reached over two or more networks that
    shares routed segments with `site` but no L2 one (which would carry BFD itself). Both
    ends compute the same pairs, so each session has its two ends."""
    segments = config.segments_at(site).values()
    order, networks = list(config.sites), config.underlay_names()
    out = []
    for peer in peers:
        shared = [s for s in segments if peer in s.sites]
        paths = config.shared_underlays(site, peer)
        if len(paths) < 2 or any(isinstance(s, L2Segment) for s in shared):
            continue
        wg_mtu = min(_wireguard_mtu(config, s, n) for s in (site, peer) for n in paths)
        for network in paths:
            local = overlay_address(config, site, network)
            out.append(
                VxlanTunnel(
                    name=liveness_name(order.index(peer), networks.index(network)),
                    segment=None,
                    peer=peer,
                    underlay=network,
                    bfd=config.bridge.failover.bfd_settings(),
                    vni=LIVENESS_VNI,
                    local=local,
                    remote=overlay_address(config, peer, network),
                    dstport=vxlan_port(config, site, peer, network),
                    mtu=mtu.inner_mtu(wg_mtu, local.version, dot1q_inside=False),
                )
            )
    return tuple(out)


def tunnel_ports(config: OvercastConfig, site: str) -> tuple[FabricPort, ...]:
    """The tunnel ports `plan_site` puts on `site`'s switch, from the config alone (no keys
    needed), for the controller."""
    out = []
    for seg_name, seg in config.segments_at(site).items():
        if isinstance(seg, L2Segment):
            for name, peer, network, _ in _tunnel_paths(config, site, seg, peers_of(config, site)):
                out.append(
                    FabricPort(
                        name=name, kind="tunnel", segment=seg_name, peer=peer, underlay=network
                    )
                )
    return tuple(out)


def _wireguard_mtu(config: OvercastConfig, site: str, network: str) -> int:
    return mtu.wireguard_mtu(
        config.sites[site].underlay_mtu, config.addresses(site)[network].version
    )


def _routes(
    config: OvercastConfig, site: str, peers: list[str], prefix: str
) -> tuple[RoutedPrefix, ...]:
    """The prefixes `peers` announce on the L3 segments `site` is in, each over the most
    preferred network the two share."""
    routes = []
    for seg_name, seg in config.segments_at(site).items():
        if not isinstance(seg, L3Segment):
            continue
        for peer, prefixes in seg.announce.items():
            shared = config.shared_underlays(site, peer)
            if peer not in peers or not shared:
                continue
            # Every shared network may carry it (failover), so clamp for the narrowest.
            path = min(_wireguard_mtu(config, s, n) for s in (site, peer) for n in shared)
            index = list(config.sites).index(site)
            interfaces = tuple(
                wireguard_name(prefix, index, config.underlay_names().index(n)) for n in shared
            )
            for net in prefixes:
                if net.version == 6 and path < mtu.IPV6_MIN_MTU:
                    raise PlanError(
                        f"segments.{seg_name}: {net} is IPv6, but the path {site} - {peer} "
                        f"has a WireGuard MTU of {path}, below IPv6's minimum of "
                        f"{mtu.IPV6_MIN_MTU} (RFC 8200 section 5); raise the underlay_mtu "
                        "of the narrower site"
                    )
                routes.append(
                    RoutedPrefix(
                        segment=seg_name,
                        prefix=net,
                        peer=peer,
                        interface=interfaces[0],
                        underlays=tuple(shared),
                        interfaces=interfaces,
                        path_mtu=path,
                        mss=mtu.tcp_mss(path, net.version),
                    )
                )
    return tuple(routes)


def _wireguard(
    config: OvercastConfig,
    site: str,
    network: str,
    peers: list[str],
    keys: Mapping[str, str],
    prefix: str,
    routes: tuple[RoutedPrefix, ...],
) -> WireGuardInterface:
    """`site`'s WireGuard interface on `network`: every peer on that network is a peer,
    with the prefixes it announces if they are routed over this interface."""
    k = config.underlay_names().index(network)
    name = wireguard_name(prefix, list(config.sites).index(site), k)
    here = config.sites[site]
    local = overlay_address(config, site, network)
    host_bits = 32 if local.version == 4 else 128
    wg_peers = []
    for peer in peers:
        address = config.addresses(peer).get(network)
        if address is None:
            continue
        host = f"[{address}]" if address.version == 6 else str(address)
        wg_peers.append(
            WireGuardPeer(
                site=peer,
                public_key=keys[peer],
                endpoint=f"{host}:{config.sites[peer].wireguard_port + k}",
                allowed_ips=(
                    ipaddress.ip_network(f"{overlay_address(config, peer, network)}/{host_bits}"),
                    *(r.prefix for r in routes if r.peer == peer and name in r.interfaces),
                ),
                persistent_keepalive=config.bridge.persistent_keepalive,
                path_mtu=min(
                    _wireguard_mtu(config, site, network), _wireguard_mtu(config, peer, network)
                ),
            )
        )
    return WireGuardInterface(
        name=name,
        underlay=network,
        public_key=keys[site],
        listen_port=here.wireguard_port + k,
        address=local,
        prefixlen=config.bridge.overlay_pool.prefixlen,
        mtu=mtu.wireguard_mtu(here.underlay_mtu, config.addresses(site)[network].version),
        peers=tuple(wg_peers),
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
