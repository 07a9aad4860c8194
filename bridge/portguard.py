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

`switch_ports`, `render_guard` and `guarded_ports` are pure; `ensure_guard` and
`disable_ipv6` apply, `unguarded` reads.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable

from pyroute2 import IPRoute

from bridge.netns import ApplyError, run

CHAIN = "switch-ports"
USERSPACE = "netdev"  # OVS's datapath_type of the userspace datapath
_FIX = "install nftables (apt-get install nftables) and run as root"
_DEVICES_RE = re.compile(r"hook ingress (?:devices = \{ ([^}]*) \}|device \"?([^\s\"]+)\"?)")


def guard_table(owner: str) -> str:
    """The nftables table (netdev family) `owner` keeps its guard in: one per owner, so
    the bridge's tunnel ports and the lab's host ports converge independently."""
    return f"overcast-{owner}"


def needs_guard(datapath_type: str) -> bool:
    return datapath_type == USERSPACE


def switch_ports(bridge: str, ports: Iterable[str], links: Iterable[str]) -> list[str]:
    """The ports of OVS `bridge` to keep the site's kernel off: every one that is a link in
    the namespace (tunnels and an operator's access ports alike), except the bridge's own
    internal port, named after the bridge, which is the kernel's way into the switch."""
    present = set(links)
    return sorted(p for p in set(ports) if p != bridge and p in present)


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


def unguarded(netns: str, table: str, ports: Iterable[str]) -> list[str]:
    """Those of `ports` that `table` in `netns` does not guard."""
    return sorted(set(ports) - (_current(netns, table) or frozenset()))


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
