"""TCP MSS clamping on every path into a tunnel, with nftables, per path.

Hosts keep MTU 1500, as real hosts do, but a tunnel carries less: a full-size segment then
dies at the tunnel's entrance and TCP hangs after its handshake. Rewriting the MSS option of
every SYN (and SYN-ACK) that enters a tunnel to fit the path (RFC 6691 section 2: MTU minus
the fixed IP and TCP headers) makes both ends send segments that fit, so nothing is dropped
and nothing is fragmented. Only TCP is helped; other traffic still needs PMTUD or hosts set
to the inner MTU (what `bridge plan` prints).

- Routed (L3) prefixes: an `inet` table whose postrouting chain (forwarded and local
  traffic alike) clamps SYNs leaving through the WireGuard interface, per announced
  prefix, to the narrower WireGuard MTU of the two ends.
- Stretched (L2) segments: no router sits in the path, the site switch hands frames to the
  VXLAN device directly. A `netdev` table hooks egress of each VXLAN device (Linux 5.16+,
  which also sees what a userspace switch sends through its packet socket) and clamps the
  IPv4 and IPv6 SYNs inside the frames to the tunnel's MTU.

Each table is rewritten only when the plan changed, in one nft transaction (`bridge.nft`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge import mtu, nft
from bridge.plan import SitePlan

ROUTED = "inet"
STRETCHED = "netdev"
_FIX = "install nftables (apt-get install nftables) and run as root on Linux 5.16 or later"
# SYN and SYN-ACK carry the MSS option (RFC 9293 section 3.7.1); RST|SYN is nonsense.
_SYN = "tcp flags & (syn | rst) == syn"


def clamp_table(site: str) -> str:
    return f"overcast-mss-{site}"


@dataclass(frozen=True)
class Clamp:
    """One clamping rule: SYNs leaving `device` (to `prefix`, if given) of `family` get
    at most `mss`."""

    device: str
    family: mtu.IPVersion
    mss: int
    prefix: str | None = None


def routed_clamps(plan: SitePlan) -> tuple[Clamp, ...]:
    return tuple(
        Clamp(interface, r.prefix.version, r.mss, str(r.prefix))
        for r in plan.routes
        for interface in r.interfaces or (r.interface,)
    )


def stretched_clamps(plan: SitePlan) -> tuple[Clamp, ...]:
    return tuple(
        Clamp(t.name, family, mtu.tcp_mss(t.mtu, family))
        for t in plan.tunnels()
        for family in (4, 6)
    )


def _rule(c: Clamp) -> str:
    ip = "ip" if c.family == 4 else "ip6"
    match = f"{ip} daddr {c.prefix}" if c.prefix else f"meta protocol {ip}"
    size = "tcp option maxseg size"
    return f"{match} {_SYN} {size} > {c.mss} {size} set {c.mss}"


def render(family: str, table: str, clamps: tuple[Clamp, ...]) -> str:
    """The nft script that makes `table` hold exactly `clamps`; no clamps, no table."""
    return nft.replace(_body(family, clamps), family, table, _comment(family, clamps))


def _body(family: str, clamps: tuple[Clamp, ...]) -> list[str]:
    body = []
    if family == ROUTED:
        body += ["  chain into-tunnels {", "    type filter hook postrouting priority mangle;"]
        body += [f'    oifname "{c.device}" {_rule(c)}' for c in clamps]
        body.append("  }")
    else:
        for device in dict.fromkeys(c.device for c in clamps):
            body += [
                f"  chain {_chain(device)} {{",
                f'    type filter hook egress device "{device}" priority 0;',
                *(f"    {_rule(c)}" for c in clamps if c.device == device),
                "  }",
            ]
    return body


def _comment(family: str, clamps: tuple[Clamp, ...]) -> str | None:
    return digest(family, clamps) if clamps else None


def digest(family: str, clamps: tuple[Clamp, ...]) -> str:
    return nft.digest([family, *[(c.device, c.family, c.mss, c.prefix) for c in clamps]])


def _chain(device: str) -> str:
    # nft identifiers take letters, digits, '_', '.' and '/': VXLAN names have '-'.
    return "to_" + device.replace("-", "_")


def ensure_clamp(netns: str, plan: SitePlan, changes: list[str]) -> None:
    """Make the site's clamping tables match `plan`; note what changed in `changes`."""
    table = clamp_table(plan.site)
    for family, clamps in ((ROUTED, routed_clamps(plan)), (STRETCHED, stretched_clamps(plan))):
        what = f"clamping TCP MSS ({family} {table})"
        body, comment = _body(family, clamps), _comment(family, clamps)
        if not nft.ensure(netns, family, table, body, comment, what, _FIX):
            continue
        if clamps:
            paths = ", ".join(sorted({f"{c.prefix or c.device} {c.mss}" for c in clamps}))
            changes.append(f"clamped TCP MSS into tunnels ({family} {table}): {paths}")
        else:
            changes.append(f"removed nftables {family} {table}")


def remove_clamp(netns: str, site: str, changes: list[str]) -> None:
    table = clamp_table(site)
    for family in (ROUTED, STRETCHED):
        if nft.remove(netns, family, table, _FIX):
            changes.append(f"removed nftables {family} {table}")
