"""The `bridge:` section of overcast.yaml: how sites address and number their tunnels.

Every field has a default, so most configs never write this section.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from overcast.model import ConfigError, IPNetwork, Model, Prefix

if TYPE_CHECKING:
    from overcast.config import OvercastConfig

# RFC 7348 section 5: IANA's VXLAN port. The tunnel between sites i and j uses
# vxlan_port_base + pair_index(i, j) (see bridge/plan.py).
VXLAN_PORT = 4789


class Failover(Model):
    """How a site moves traffic between the paths to a peer (bridge/failover.py)."""

    # OVS BFD (RFC 5880) on each path's tunnel port: min_tx = min_rx = this, and OVS's fixed
    # detect multiplier of 3, so a dead path is declared down 3 intervals after its last
    # packet. 50 ms: gaps of about 130-250 ms with the userspace datapath and wireguard-go
    # (bench/failover.py), under the 300 ms target, while a busy machine already sends
    # single BFD packets 100-200 ms late at times: shorter intervals would declare healthy
    # paths dead more often. RFC 5880 section 6.8.3 slows a session
    # that is not up to one packet a second, which costs nothing here: it only delays
    # failback, which the hold-down delays anyway.
    bfd_interval_ms: int = Field(50, ge=10, le=10_000)
    # Traffic returns to a more preferred path only after its BFD session has been up this
    # long without a break; every drop restarts the wait, so a flapping path never draws
    # traffic back. 5 s is 100 BFD intervals of a clean path.
    hold_down_s: float = Field(5.0, ge=0, le=3600)

    def bfd_settings(self) -> dict[str, str]:
        """OVSDB Interface.bfd for a path's tunnel port."""
        interval = str(self.bfd_interval_ms)
        return {"enable": "true", "min_tx": interval, "min_rx": interval}


class BridgeConfig(Model):
    # Overlay addresses live only on the WireGuard interfaces (one per site, in config order).
    # Default: a /24 from RFC 6598 shared address space (100.64.0.0/10). Enterprise LANs and
    # clouds use RFC 1918 space, which a stretched segment or routed prefix may carry, so a
    # pool from there risks a clash; RFC 6598 is never routed on the Internet and is rarely
    # numbered inside an enterprise. IPv4 keeps VXLAN overhead at 50 bytes (70 over IPv6).
    # Change it if a site's underlay sits behind carrier-grade NAT in this same range.
    overlay_pool: Prefix = ipaddress.IPv4Network("100.64.0.0/24")
    vxlan_port_base: int = Field(VXLAN_PORT, ge=1024, le=65535)
    # wg(8) suggests 25 s to keep NAT and stateful-firewall mappings open at provider sites.
    persistent_keepalive: int = Field(25, ge=0, le=65535)
    # True if the controller forwards frames into VXLAN with their 802.1Q tag still on; the
    # inner MTU then loses 4 more bytes (IEEE 802.1Q). RFC 7348 section 6.1 says tagged inner
    # frames should be discarded unless configured, so the default is untagged.
    inner_vlan_tag: bool = False
    failover: Failover = Failover()

    @field_validator("overlay_pool")
    @classmethod
    def _pool_has_hosts(cls, pool: IPNetwork) -> IPNetwork:
        if pool.num_addresses < 4:
            raise ValueError(
                f"{pool} holds too few addresses for an overlay; use a larger pool like /24"
            )
        return pool

    def overlay_pool_of(self, underlay_index: int) -> IPNetwork:
        """The overlay pool of the k-th underlay network (in preference order): the
        configured pool for the first, the next blocks of the same size for the others
        (100.64.0.0/24, 100.64.1.0/24, ...), so each network's WireGuard interfaces are
        one connected route of their own."""
        pool = self.overlay_pool
        start = int(pool.network_address) + underlay_index * pool.num_addresses
        return ipaddress.ip_network(f"{ipaddress.ip_address(start)}/{pool.prefixlen}")

    def problems(self, config: OvercastConfig) -> list[ConfigError]:
        """Checks that need the sites and segments; paths are relative to the file root."""
        return [
            *self._pool_problems(config),
            *self._port_problems(config),
            *_family_problems(config),
        ]

    def _pool_problems(self, config: OvercastConfig) -> Iterator[ConfigError]:
        usable = self.overlay_pool.num_addresses - 2  # network and broadcast (or anycast)
        if len(config.sites) > usable:
            yield ConfigError(
                "bridge.overlay_pool",
                f"{self.overlay_pool} has {usable} addresses for {len(config.sites)} sites; "
                "use a larger pool",
            )
        networks = config.underlay_names()
        try:
            pools = [self.overlay_pool_of(k) for k in range(len(networks))]
        except ValueError:
            yield ConfigError(
                "bridge.overlay_pool",
                f"{len(networks)} underlay networks need {len(networks)} blocks the size of "
                f"{self.overlay_pool} from there on, past the end of the address space; "
                "pick a lower pool",
            )
            return
        every = ", ".join(map(str, pools))
        for name in config.sites:
            for address in config.addresses(name).values():
                if any(address.version == p.version and address in p for p in pools):
                    yield ConfigError(
                        "bridge.overlay_pool",
                        f"the overlay ({every}) contains the underlay {address} of "
                        f"sites.{name}; pick a pool that no underlay address is in",
                    )
        for name, seg in config.segments.items():
            for prefix in getattr(seg, "prefixes", ()):
                if any(prefix.version == p.version and prefix.overlaps(p) for p in pools):
                    yield ConfigError(
                        "bridge.overlay_pool",
                        f"the overlay ({every}) overlaps {prefix} of segments.{name}; "
                        "pick a pool that no segment uses",
                    )

    def _port_problems(self, config: OvercastConfig) -> Iterator[ConfigError]:
        n = len(config.sites)
        ports = n * (n - 1) // 2 * len(config.underlay_names())
        last = self.vxlan_port_base + ports - 1
        if last > 65535:
            yield ConfigError(
                "bridge.vxlan_port_base",
                f"{n} sites need UDP ports {self.vxlan_port_base}-{last} (one per site pair"
                + (" and underlay network" if config.underlays else "")
                + f"); lower the base to at most {65535 - ports + 1}",
            )
        for name, site in config.sites.items():
            # Network k (in preference order) listens on wireguard_port + k.
            top = site.wireguard_port + len(config.underlay_names()) - 1
            if top > 65535:
                yield ConfigError(
                    f"sites.{name}.wireguard_port",
                    f"its WireGuard interfaces (one per underlay network) need ports "
                    f"{site.wireguard_port}-{top}; lower it",
                )


def _family_problems(config: OvercastConfig) -> Iterator[ConfigError]:
    # WireGuard peers reach each other over the underlay: on one network, an IPv4-only and
    # an IPv6-only site sharing a segment have no path.
    for name, seg in config.segments.items():
        known = [s for s in seg.sites if s in config.sites]
        for network in config.underlay_names():
            on = {s: config.addresses(s)[network] for s in known if network in config.addresses(s)}
            if len({a.version for a in on.values()}) > 1:
                sites = ", ".join(f"{s} (IPv{a.version})" for s, a in on.items())
                yield ConfigError(
                    f"segments.{name}.sites",
                    f"sites {sites} mix IPv4 and IPv6 underlays"
                    + (f" on network {network}" if config.underlays else "")
                    + " and cannot reach each other; give them underlay addresses of one family",
                )
