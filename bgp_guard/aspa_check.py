"""Our own ASPAs against the providers our ASNs really use, as BGP data shows them.

In a path (collector side first) the AS left of one of ours heard the route from us: for the
routes to climb, it must be listed in our ASPA (draft-ietf-sidrops-aspa-verification-28
section 5.3), or every path through it verifies Invalid. An AS left of ours is not a
provider when its own ASPA names our AS (it is our customer) or when the CAIDA file calls it
our peer or customer; peers and customers do not belong in an ASPA.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bgp_guard.aspa import AspaSet
from bgp_guard.asrel import AsRelationships, Hop
from bgp_guard.rib import prefix_key
from bgp_guard.update import FeedItem, Update


@dataclass
class Seen:
    updates: int = 0
    prefixes: set[int] = field(default_factory=set)


def observe(items: Iterable[FeedItem], own: frozenset[int]) -> dict[int, dict[int, Seen]]:
    """For each of our ASNs, the ASes seen right before it in announced paths."""
    out: dict[int, dict[int, Seen]] = {asn: {} for asn in own}
    for item in items:
        if type(item) is not Update or not item.announce or own.isdisjoint(item.as_path):
            continue
        previous: int | None = None
        for element in item.as_path:
            if type(element) is not int:
                previous = None  # an AS_SET hides who heard the route from whom
                continue
            if element in own and previous is not None and previous != element:
                seen = out[element].setdefault(previous, Seen())
                seen.updates += 1
                seen.prefixes.add(prefix_key(item.prefix))
            previous = element
    return out


def relationship(asn: int, neighbour: int, aspas: AspaSet, asrel: AsRelationships | None) -> str:
    """What `neighbour` (heard our route from `asn`) is to `asn`, as far as the data says."""
    theirs = (aspas.providers(neighbour, 4) or frozenset()) | (
        aspas.providers(neighbour, 6) or frozenset()
    )
    if asn in theirs:
        return "customer (its ASPA names us)"
    hop = None if asrel is None else asrel.hop(asn, neighbour)
    if hop is Hop.UP:
        return "provider (CAIDA)"
    if hop is Hop.FLAT:
        return "peer (CAIDA)"
    if hop is Hop.DOWN:
        return "customer (CAIDA)"
    return "upstream"


def compare(
    seen: dict[int, dict[int, Seen]], aspas: AspaSet, asrel: AsRelationships | None
) -> list[dict[str, Any]]:
    """One report per ASN of ours: the ASPA published, the upstreams used, and what is
    missing from or stale in the ASPA."""
    reports = []
    for asn in sorted(seen):
        v4, v6 = aspas.providers(asn, 4), aspas.providers(asn, 6)
        published = None if v4 is None and v6 is None else (v4 or frozenset()) | (v6 or frozenset())
        used = [
            {
                "asn": neighbour,
                "relationship": relationship(asn, neighbour, aspas, asrel),
                "updates": s.updates,
                "prefixes": len(s.prefixes),
            }
            for neighbour, s in sorted(seen[asn].items(), key=lambda kv: -kv[1].updates)
        ]
        providers = [u for u in used if u["relationship"] in ("upstream", "provider (CAIDA)")]
        listed = published or frozenset()
        missing = [
            {**u, "why": _missing(asn, u, published)} for u in providers if u["asn"] not in listed
        ]
        stale = [
            {
                "asn": p,
                "why": f"AS{p} is in AS{asn}'s ASPA but carried none of AS{asn}'s routes in "
                "the data given; remove it if the contract ended (a backup provider that "
                "was idle is fine)",
            }
            for p in sorted(listed - {0} - {u["asn"] for u in used})
        ]
        reports.append(
            {
                "asn": asn,
                "published": None if published is None else sorted(published),
                "used": used,
                "missing": missing,
                "stale": stale,
                "ok": published is not None and not missing and not stale,
            }
        )
    return reports


def _missing(asn: int, used: dict[str, Any], published: frozenset[int] | None) -> str:
    carried = (
        f"AS{used['asn']} heard AS{asn}'s routes ({used['updates']} updates, "
        f"{used['prefixes']} prefixes)"
    )
    if published is None:
        return f"{carried}, and AS{asn} publishes no ASPA: its paths verify Unknown at best"
    if published <= {0}:
        return f"{carried}, but AS{asn}'s ASPA says it has no providers (AS0)"
    peer = (
        " (if it is a peer, not a provider, leave it out)"
        if used["relationship"] == "upstream"
        else ""
    )
    return f"{carried} but is not in AS{asn}'s ASPA: routes through it verify Invalid; add it{peer}"


def render(reports: list[dict[str, Any]]) -> str:
    lines = []
    for r in reports:
        names = ", ".join(f"AS{p}" for p in r["published"] or ())
        lines.append(
            f"AS{r['asn']}: "
            + ("publishes no ASPA" if r["published"] is None else f"ASPA lists {names}")
        )
        used = ", ".join(
            f"AS{u['asn']} ({u['relationship']}, {u['updates']} updates)" for u in r["used"]
        )
        lines.append(f"  heard our routes: {used or 'nobody, in the data given'}")
        lines += [f"  missing: {m['why']}" for m in r["missing"]]
        lines += [f"  stale: {s['why']}" for s in r["stale"]]
        if r["ok"]:
            lines.append("  ok: the ASPA matches the providers in use")
    return "\n".join(lines)
