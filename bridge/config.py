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

    @field_validator("overlay_pool")
    @classmethod
    def _pool_has_hosts(cls, pool: IPNetwork) -> IPNetwork:
        if pool.num_addresses < 4:
            raise ValueError(
                f"{pool} holds too few addresses for an overlay; use a larger pool like /24"
            )
        return pool

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
        for name, site in config.sites.items():
            if site.underlay.version == self.overlay_pool.version and (
                site.underlay in self.overlay_pool
            ):
                yield ConfigError(
                    "bridge.overlay_pool",
                    f"{self.overlay_pool} contains the underlay {site.underlay} of "
                    f"sites.{name}; pick a pool that no underlay address is in",
                )
        for name, seg in config.segments.items():
            for prefix in getattr(seg, "prefixes", ()):
                if prefix.version == self.overlay_pool.version and prefix.overlaps(
                    self.overlay_pool
                ):
                    yield ConfigError(
                        "bridge.overlay_pool",
                        f"{self.overlay_pool} overlaps {prefix} of segments.{name}; "
                        "pick a pool that no segment uses",
                    )

    def _port_problems(self, config: OvercastConfig) -> Iterator[ConfigError]:
        n = len(config.sites)
        last = self.vxlan_port_base + n * (n - 1) // 2 - 1
        if last > 65535:
            yield ConfigError(
                "bridge.vxlan_port_base",
                f"{n} sites need UDP ports {self.vxlan_port_base}-{last} (one per site pair); "
                f"lower the base to at most {65535 - n * (n - 1) // 2 + 1}",
            )


def _family_problems(config: OvercastConfig) -> Iterator[ConfigError]:
    # WireGuard peers reach each other over the underlay: an IPv4-only and an IPv6-only
    # site sharing a segment have no path.
    for name, seg in config.segments.items():
        known = [s for s in seg.sites if s in config.sites]
        families = {config.sites[s].underlay.version for s in known}
        if len(families) > 1:
            sites = ", ".join(f"{s} (IPv{config.sites[s].underlay.version})" for s in known)
            yield ConfigError(
                f"segments.{name}.sites",
                f"sites {sites} mix IPv4 and IPv6 underlays and cannot reach each other; "
                "give them underlay addresses of one family",
            )
