"""What is plugged into each site's switch: the contract between the data plane and the controller.

The bridge plan names the tunnel ports, the config and OVSDB name the access ports, and the
controller (`controller.fabric.derive`) puts them together into a `Fabric`, then turns config +
fabric into flows. The type lives here, in the shell every part shares, so the bridge, the lab
and the controller use it without importing one another. Ports are named, never numbered: the controller resolves
OpenFlow port numbers from the switch's port descriptions, so a re-plugged port keeps working.
"""

from __future__ import annotations

from typing import Literal

from overcast.model import Model


class FabricPort(Model):
    """One OVS port. `access`: a host (untagged); `tunnel`: VXLAN toward other sites."""

    name: str
    kind: Literal["access", "tunnel"]
    segment: str
    # MACs known to sit behind this port (hosts the lab created), for proactive forwarding.
    macs: tuple[str, ...] = ()
    # Tunnel ports: the site at the far end. The controller then forwards unicast to that
    # site's hosts (the MACs of its access ports in the segment) into this tunnel.
    peer: str | None = None
    # Tunnel ports: the underlay network the tunnel runs over. A peer reached over several
    # is forwarded to through a fast-failover group, in the config's order of preference.
    underlay: str | None = None


class SiteSwitch(Model):
    site: str
    bridge: str
    dpid: int
    ports: tuple[FabricPort, ...] = ()


class Fabric(Model):
    switches: dict[str, SiteSwitch] = {}

    def by_dpid(self, dpid: int) -> SiteSwitch | None:
        return next((s for s in self.switches.values() if s.dpid == dpid), None)
