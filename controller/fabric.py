"""Each site switch's ports, derived: nobody writes a fabric file.

Access ports come from the config (`sites.<site>.switch.access`, by interface name) and from
the switch's OVSDB, where a port whose Interface carries `external_ids:overcast-segment`
(as a hypervisor hook sets it for a VM's port, like OVN's `iface-id`) joins that segment.
Tunnel ports come from the bridge plan. The datapath id is the one OVSDB reports, else the
config's. Pure: `Discovered` is what `controller.discovery` read from OVSDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.plan import tunnel_ports
from controller.config import check_mac
from overcast.config import OvercastConfig
from overcast.fabric import Fabric, FabricPort, SiteSwitch

SEGMENT_TAG = "overcast-segment"  # Interface external_ids key naming a port's segment
# The key libvirt and OpenStack Nova set on a VM's interface: the VM's MAC, locked in.
MAC_TAG = "attached-mac"


@dataclass(frozen=True)
class Discovered:
    """What one site's OVSDB says: the bridge's datapath id and its ports' segment tags."""

    dpid: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)  # port name -> segment
    macs: Mapping[str, str] = field(default_factory=dict)  # port name -> attached MAC


def derive(config: OvercastConfig, discovered: Mapping[str, Discovered] | None = None) -> Fabric:
    """The fabric of every site: from the config alone, plus what OVSDB reported."""
    seen = discovered or {}
    return Fabric(
        switches={
            name: SiteSwitch(
                site=name,
                bridge=site.switch.bridge,
                dpid=seen.get(name, Discovered()).dpid or config.dpid(name),
                ports=(
                    *(
                        FabricPort(name=port, kind="access", segment=a.segment, macs=a.hosts)
                        for port, a in site.switch.access.items()
                    ),
                    *_tagged(config, name, seen.get(name, Discovered())),
                    *tunnel_ports(config, name),
                ),
            )
            for name, site in config.sites.items()
        }
    )


def tag_problems(config: OvercastConfig, site: str, found: Discovered) -> list[str]:
    """Tags that name no segment of `site`: each ignored, and said why."""
    l2 = config.l2_segments()
    out = [
        f"site {site}: port {port} has {SEGMENT_TAG}={segment!r}, which is no L2 segment at "
        f"{site}; set it to one of: {', '.join(n for n, s in l2.items() if site in s.sites)}"
        for port, segment in sorted(found.tags.items())
        if segment not in l2 or site not in l2[segment].sites
    ]
    for port, mac in sorted(found.macs.items()):
        if port in found.tags and not _mac(mac):
            out.append(
                f"site {site}: port {port} has {MAC_TAG}={mac!r}, not a unicast MAC; ignored"
            )
    return out


def _mac(value: str | None) -> tuple[str, ...]:
    try:
        return (check_mac(value),) if value else ()
    except ValueError:
        return ()  # tag_problems says why


def _tagged(config: OvercastConfig, site: str, found: Discovered) -> list[FabricPort]:
    l2 = config.l2_segments()
    configured = config.sites[site].switch.access
    return [
        FabricPort(name=port, kind="access", segment=segment, macs=_mac(found.macs.get(port)))
        for port, segment in sorted(found.tags.items())
        # The config names a port's segment first; a tag cannot move a configured port.
        if port not in configured and segment in l2 and site in l2[segment].sites
    ]
