"""Keep a site's own IP stack off the ports of its Open vSwitch.

A userspace (netdev) OVS reads each port with a packet socket, which leaves every frame
to the namespace's kernel as well. Without a guard a host can address a VXLAN packet to
its site's overlay address and the kernel decapsulates it into another segment's tunnel
device, from where the switch carries it into that segment. An nftables ingress hook runs
after packet sockets took their copy (net/core/dev.c, __netif_receive_skb_core), so OVS
still sees every frame and the kernel none. The kernel datapath takes frames in its
rx_handler, which runs after that hook: there the kernel never sees them, and a guard
would blackhole the switch, so only userspace switches get one.

The kernel also has no business talking IPv6 (router solicitations, MLD reports) out of a
switch port, so switch ports get disable_ipv6 whatever the datapath.

Which interfaces are switch ports is decided per interface from OVSDB's Interface.type,
resolved as ovs-vswitchd does (vswitchd/bridge.c, iface_get_type): the interface named
after its bridge is always "internal", an empty type is "system".

- "internal" and "tap": left alone. OVS holds the device itself and the site's kernel
  is its other end: what the switch sends out of such a port is what the kernel
  receives on it (the userspace datapath even opens an internal port as a tap,
  lib/dpif-netdev.c, dpif_netdev_port_open_type). These are the kernel's deliberate
  attachments to the switch: the bridge's own port, a management or routed interface.
  Guarding one drops every frame the switch hands the kernel there, so it goes dead.
- Every other type with a Linux device of its name in the namespace ("system": veths,
  NICs, a VM's tap, our VXLAN devices; "afxdp"): guarded. These are the wire side of
  the switch, and frames arriving on them are the switch's alone. A type this module
  does not know is treated the same way: a kernel cut off from a port shows at once,
  a kernel quietly listening on a switch port does not.
- Any other without such a device (OVS's own tunnels, patch and DPDK ports): nothing
  the kernel could receive on, nothing to guard.

`classify`, `switch_ports`, `audit`, `render_guard` and `guarded_ports` are pure;
`ensure_guard` and `disable_ipv6` apply, `guarded_now` reads.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pyroute2 import IPRoute

from bridge.netns import ApplyError, run

CHAIN = "switch-ports"
USERSPACE = "netdev"  # OVS's datapath_type of the userspace datapath
_FIX = "install nftables (apt-get install nftables) and run as root"
_DEVICES_RE = re.compile(r"hook ingress (?:devices = \{ ([^}]*) \}|device \"?([^\s\"]+)\"?)")
# Interface types whose device OVS holds itself, with the site's kernel at its other end.
KERNEL_SIDE = frozenset({"internal", "tap"})


class Role(StrEnum):
    """What an interface of the switch is to the site's kernel."""

    SWITCH = "switch port"  # a Linux device the switch reads: the kernel is kept off it
    KERNEL = "kernel port"  # the kernel's own interface on the switch: left alone
    NO_DEVICE = "no device"  # no Linux device here, nothing for the kernel to receive on


@dataclass(frozen=True)
class SwitchPort:
    """One interface of an OVS bridge, and what the guard makes of it."""

    name: str
    type: str  # as ovs-vswitchd opens it: "system", "internal", "tap", "vxlan", ...
    role: Role


def guard_table(owner: str) -> str:
    """The nftables table (netdev family) `owner` keeps its guard in: one per owner, so
    the bridge's tunnel ports and the lab's host ports converge independently."""
    return f"overcast-{owner}"


def needs_guard(datapath_type: str) -> bool:
    return datapath_type == USERSPACE


def interface_type(bridge: str, name: str, type: str) -> str:
    """Interface.type as ovs-vswitchd reads it (vswitchd/bridge.c, iface_get_type): the
    interface named after its bridge is its local port, always "internal"; "" is "system"."""
    return "internal" if name == bridge else type or "system"


def classify(
    bridge: str, interfaces: Mapping[str, str], links: Iterable[str]
) -> tuple[SwitchPort, ...]:
    """Each interface of OVS `bridge` (name -> Interface.type as OVSDB has it) with its
    role, given the `links` of the namespace (the module docstring says why)."""
    present = set(links)
    ports = []
    for name, raw in sorted(interfaces.items()):
        type = interface_type(bridge, name, raw)
        if type in KERNEL_SIDE:
            role = Role.KERNEL
        elif name in present:
            role = Role.SWITCH
        else:
            role = Role.NO_DEVICE
        ports.append(SwitchPort(name, type, role))
    return tuple(ports)


def switch_ports(ports: Iterable[SwitchPort]) -> list[str]:
    """The names of `ports` the site's kernel must be kept off."""
    return sorted(p.name for p in ports if p.role is Role.SWITCH)


@dataclass(frozen=True)
class PortGuard:
    """A port of the switch, whether the guard should cover it, and whether it does."""

    port: SwitchPort
    wanted: bool
    guarded: bool

    @property
    def unguarded(self) -> bool:
        """A switch port whose frames the site's kernel still sees."""
        return self.wanted and not self.guarded

    @property
    def cut_off(self) -> bool:
        """Guarded though it must not be: the kernel's own port, or any port of a
        kernel-datapath switch (there the hook runs first and starves the switch)."""
        return self.guarded and not self.wanted


def audit(
    ports: Iterable[SwitchPort], datapath_type: str, guarded: Iterable[str]
) -> tuple[PortGuard, ...]:
    """Compare what the guard covers (`guarded`) with what it should on a switch of
    `datapath_type`."""
    have, userspace = frozenset(guarded), needs_guard(datapath_type)
    return tuple(
        PortGuard(p, wanted=userspace and p.role is Role.SWITCH, guarded=p.name in have)
        for p in ports
    )


def render_guard(table: str, ports: Iterable[str]) -> str:
    """The nft script that makes `table` drop exactly `ports` at ingress, in one
    transaction (created, emptied and rebuilt: re-running it converges); no ports, no table."""
    lines = [f"table netdev {table}", f"delete table netdev {table}"]
    wanted = sorted(set(ports))
    if wanted:
        devices = ", ".join(json.dumps(p) for p in wanted)
        lines += [
            f"table netdev {table} {{",
            f"  chain {CHAIN} {{",
            f"    type filter hook ingress devices = {{ {devices} }} priority 0; policy drop;",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def guarded_ports(listing: str) -> frozenset[str]:
    """The devices guarded in `nft list table netdev <table>` output (nft prints a single
    device as `device x`, several as `devices = { x, y }`)."""
    found: set[str] = set()
    for many, one in _DEVICES_RE.findall(listing):
        found.update(d.strip().strip('"') for d in many.split(",") if d.strip())
        if one:
            found.add(one)
    return frozenset(found)


def ensure_guard(netns: str, table: str, ports: Iterable[str], changes: list[str]) -> None:
    """Make `table` in `netns` guard exactly `ports`; note what changed in `changes`."""
    wanted = frozenset(ports)
    have = _current(netns, table)
    if have == (wanted or None):
        return
    _nft(
        netns,
        ["-f", "-"],
        f"guarding switch ports with nftables table {table}",
        render_guard(table, wanted),
    )
    if wanted:
        changes.append(
            f"guarded switch ports {', '.join(sorted(wanted))} (nftables netdev {table})"
        )
    else:
        changes.append(f"removed nftables netdev {table}")


def remove_guard(netns: str, table: str, changes: list[str]) -> None:
    """Remove `table` if it is there; without nft installed there can be none of ours."""
    if shutil.which("nft") is not None:
        ensure_guard(netns, table, (), changes)


def guarded_now(netns: str, table: str) -> frozenset[str]:
    """The ports `table` in `netns` guards (none if there is no such table)."""
    return _current(netns, table) or frozenset()


def _current(netns: str, table: str) -> frozenset[str] | None:
    """The ports `table` guards now, or None if there is no such table."""
    tables = _nft(netns, ["list", "tables", "netdev"], "listing nftables tables", None)
    if f"table netdev {table}" not in tables.splitlines():
        return None
    return guarded_ports(_nft(netns, ["list", "table", "netdev", table], f"listing {table}", None))


def _nft(netns: str, args: list[str], what: str, stdin: str | None) -> str:
    if shutil.which("nft") is None:
        raise ApplyError(f"{what} in namespace {netns}: nft is not installed; {_FIX}")
    return run(netns, ["nft", *args], what=what, fix=_FIX, stdin=stdin)


def disable_ipv6(netns: str, ports: Iterable[str], changes: list[str]) -> None:
    """Set net.ipv6.conf.<port>.disable_ipv6=1 on every port of `ports` that lacks it."""
    with IPRoute(netns=netns, flags=0) as ipr:
        pending = [p for p in ports if _ipv6_enabled(ipr, p)]
    if not pending:
        return
    # The slash form keeps a dot in an interface name (eth0.100) from splitting the key.
    settings = [f"net/ipv6/conf/{p}/disable_ipv6=1" for p in pending]
    run(
        netns,
        ["sysctl", "-q", "-w", *settings],
        what=f"disabling IPv6 on {', '.join(pending)}",
        fix="check that procps (sysctl) is installed and run as root",
    )
    changes.append(f"disabled IPv6 on {', '.join(pending)}")


def _ipv6_enabled(ipr: IPRoute, name: str) -> bool:
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        return False
    spec = ipr.get_links(indexes[0])[0].get("IFLA_AF_SPEC")
    inet6 = spec.get("AF_INET6") if spec is not None else None
    conf = inet6.get("IFLA_INET6_CONF") if inet6 is not None else None
    # No IPv6 in this kernel (ipv6.disable=1): nothing to turn off.
    return conf is not None and conf.get("disable_ipv6") == 0
