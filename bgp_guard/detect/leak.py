"""Route leaks (RFC 7908): an AS path that is not valley-free."""

from __future__ import annotations

from bgp_guard.asrel import AsRelationships
from bgp_guard.events import Finding
from bgp_guard.update import Update


def check(update: Update, rels: AsRelationships, about: str) -> Finding | None:
    leak = rels.find_leak(update.as_path)
    if leak is None:
        return None
    return Finding(
        "route-leak",
        update.prefix,
        leak.leaker,
        about,
        f"Route leak of {update.prefix}: {leak.explain()} (the path is not valley-free).",
    )
