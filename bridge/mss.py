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

Each table carries a digest of its rules in its comment: `ensure_clamp` rewrites it only
when the plan changed, in one nft transaction, so re-applying changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from bridge import mtu
from bridge.netns import ApplyError, run
from bridge.plan import SitePlan

ROUTED = "inet"
STRETCHED = "netdev"
_FIX = "install nftables (apt-get install nftables) and run as root on Linux 5.16 or later"
# SYN and SYN-ACK carry the MSS option (RFC 9293 section 3.7.1); RST|SYN is nonsense.
_SYN = "tcp flags & (syn | rst) == syn"
_COMMENT_RE = re.compile(r'^\s*comment "([^"]*)"$', re.MULTILINE)


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
    """The nft script that makes `table` hold exactly `clamps` (created, emptied and
    rebuilt in one transaction); no clamps, no table."""
    lines = [f"table {family} {table}", f"delete table {family} {table}"]
    if not clamps:
        return "\n".join(lines) + "\n"
    lines += [f"table {family} {table} {{", f'  comment "{digest(family, clamps)}"']
    if family == ROUTED:
        lines += ["  chain into-tunnels {", "    type filter hook postrouting priority mangle;"]
        lines += [f'    oifname "{c.device}" {_rule(c)}' for c in clamps]
        lines.append("  }")
    else:
        for device in dict.fromkeys(c.device for c in clamps):
            lines += [
                f"  chain {_chain(device)} {{",
                f'    type filter hook egress device "{device}" priority 0;',
                *(f"    {_rule(c)}" for c in clamps if c.device == device),
                "  }",
            ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def digest(family: str, clamps: tuple[Clamp, ...]) -> str:
    text = json.dumps([family, *[(c.device, c.family, c.mss, c.prefix) for c in clamps]])
    return "plan " + hashlib.sha256(text.encode()).hexdigest()[:16]


def _chain(device: str) -> str:
    # nft identifiers take letters, digits, '_', '.' and '/': VXLAN names have '-'.
    return "to_" + device.replace("-", "_")


def ensure_clamp(netns: str, plan: SitePlan, changes: list[str]) -> None:
    """Make the site's clamping tables match `plan`; note what changed in `changes`."""
    table = clamp_table(plan.site)
    for family, clamps in ((ROUTED, routed_clamps(plan)), (STRETCHED, stretched_clamps(plan))):
        want = digest(family, clamps) if clamps else None
        if _current(netns, family, table) == want:
            continue
        _nft(
            netns,
            ["-f", "-"],
            f"clamping TCP MSS ({family} {table})",
            render(family, table, clamps),
        )
        if clamps:
            paths = ", ".join(sorted({f"{c.prefix or c.device} {c.mss}" for c in clamps}))
            changes.append(f"clamped TCP MSS into tunnels ({family} {table}): {paths}")
        else:
            changes.append(f"removed nftables {family} {table}")


def remove_clamp(netns: str, site: str, changes: list[str]) -> None:
    table = clamp_table(site)
    for family in (ROUTED, STRETCHED):
        if _current(netns, family, table) is not None:
            _nft(netns, ["-f", "-"], f"removing {table}", render(family, table, ()))
            changes.append(f"removed nftables {family} {table}")


def _current(netns: str, family: str, table: str) -> str | None:
    """The digest in `table`'s comment; "" for a table without one, None if none exists."""
    tables = _nft(netns, ["list", "tables", family], "listing nftables tables", None)
    if f"table {family} {table}" not in tables.splitlines():
        return None
    # nft 1.0.6 leaves table comments out of its JSON; the text listing has them.
    listing = _nft(netns, ["list", "table", family, table], f"listing {table}", None)
    found = _COMMENT_RE.search(listing)
    return found.group(1) if found else ""


def _nft(netns: str, args: list[str], what: str, stdin: str | None) -> str:
    try:
        return run(netns, ["nft", *args], what=what, fix=_FIX, stdin=stdin)
    except FileNotFoundError:
        raise ApplyError(f"{what} in namespace {netns}: nft is not installed; {_FIX}") from None
