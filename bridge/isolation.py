"""Routed (L3) segments kept apart at every site, with nftables.

The switches keep L2 segments apart (a frame only reaches ports of its own segment), but a
site routes for all of its L3 segments from one routing table: without a filter, a host of
one routed segment reaches a host of another through the site, locally or across the
WireGuard tunnels. Each site that is on an L3 segment therefore refuses to forward a
packet whose source lies in one L3 segment's prefixes and whose destination lies in
another's (`inet` table, forward hook), and answers with ICMP "administratively
prohibited" (RFC 792 type 3 code 13, RFC 4443 type 1 code 1) so a ping or a connect fails
at once and says why instead of timing out. The config guarantees that no two L3
segments' prefixes overlap, so every address belongs to at most one segment. Checking at
every site, the receiving one too, means a peer that does not filter cannot open the way.

Traffic within a segment, to and from L2 segments and the site's own traffic are not
touched: L2 hosts and routed prefixes have no routes to each other to begin with.
"""

from __future__ import annotations

from bridge import nft
from bridge.plan import RoutedSegment, SitePlan

FAMILY = "inet"
_FIX = "install nftables (apt-get install nftables) and run as root"


def isolation_table(site: str) -> str:
    return f"overcast-segments-{site}"


def _set(prefixes: list[str]) -> str:
    return "{ " + ", ".join(prefixes) + " }"


def rules(segments: tuple[RoutedSegment, ...]) -> list[str]:
    """One rule per segment and address family: from its prefixes to any other's, refused."""
    out = []
    for seg in segments:
        for version, ip in ((4, "ip"), (6, "ip6")):
            own = [str(p) for p in seg.prefixes if p.version == version]
            others = [
                str(p)
                for other in segments
                if other.segment != seg.segment
                for p in other.prefixes
                if p.version == version
            ]
            if own and others:
                out.append(
                    f"{ip} saddr {_set(own)} {ip} daddr {_set(others)} counter "
                    f'reject with icmpx type admin-prohibited comment "from {seg.segment}"'
                )
    return out


def render(site: str, segments: tuple[RoutedSegment, ...]) -> str:
    """The nft script that makes the site's table hold exactly what `segments` need (none
    when there are fewer than two segments of one address family)."""
    found = rules(segments)
    return nft.replace(_body(found), FAMILY, isolation_table(site), _comment(found))


def _body(found: list[str]) -> list[str]:
    return [
        "  chain between-segments {",
        "    type filter hook forward priority filter; policy accept;",
        *(f"    {r}" for r in found),
        "  }",
    ]


def _comment(found: list[str]) -> str | None:
    return nft.digest(found) if found else None


def ensure_isolation(netns: str, plan: SitePlan, changes: list[str]) -> None:
    """Make the site's isolation table match `plan`; note what changed in `changes`."""
    table = isolation_table(plan.site)
    found = rules(plan.routed_segments)
    what = f"keeping routed segments apart ({table})"
    if not nft.ensure(netns, FAMILY, table, _body(found), _comment(found), what, _FIX):
        return
    if found:
        names = ", ".join(s.segment for s in plan.routed_segments)
        changes.append(f"kept routed segments apart ({FAMILY} {table}): {names}")
    else:
        changes.append(f"removed nftables {FAMILY} {table}")


def remove_isolation(netns: str, site: str, changes: list[str]) -> None:
    table = isolation_table(site)
    if nft.remove(netns, FAMILY, table, _FIX):
        changes.append(f"removed nftables {FAMILY} {table}")
