"""A route to one of our prefixes that carries a community we listed (`flag_communities`):
BLACKHOLE (RFC 7999) on our prefix from someone who is not us, NO_EXPORT where we expect
none, a provider's traffic-engineering tag. One event per prefix and origin AS."""

from __future__ import annotations

from bgp_guard.communities import text
from bgp_guard.events import Finding
from bgp_guard.monitored import Monitored
from bgp_guard.update import Update


def check(update: Update, mon: Monitored) -> Finding | None:
    flagged = [text(c) for c in update.communities if c in mon.flag_communities]
    flagged += [text(c) for c in update.large_communities if c in mon.flag_large_communities]
    if not flagged:
        return None
    origin = update.origin
    whose = "ours" if origin in mon.origins else "not ours"
    return Finding(
        "community",
        update.prefix,
        origin if isinstance(origin, int) else None,
        mon.name,
        f"{update.prefix} from AS{update.peer_asn} ({update.peer_ip}) carries "
        f"{', '.join(flagged)}, listed in flag_communities for {mon.prefix}; origin "
        f"AS{origin} ({whose}).",
    )
