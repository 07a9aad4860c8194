"""Hijack types of the ARTEMIS taxonomy, for one announcement of a monitored prefix or of a
more-specific of one.

- E|0 exact prefix, wrong origin;  S|0 more-specific, wrong origin
- E|1 / S|1 right origin, but the AS next to it is not an allowed upstream (fake first hop)
- Q|0 a prefix we hold but never announce appears (squatting)
- too-specific: the right origin announces a more-specific longer than `max_length`
- as-set-origin: the origin is an AS_SET, which no check can attribute (RFC 6472)

A prefix monitored with `origins: any` has no named origins: any origin is legitimate for
the exact prefix, and a more-specific is S|0 unless its origin also originates the exact
prefix at the time (`exact_origins`, from the routes held).
"""

from __future__ import annotations

from collections.abc import Callable

from bgp_guard.events import Finding
from bgp_guard.monitored import Monitored
from bgp_guard.update import PathElement, Update


def first_hop(as_path: tuple[PathElement, ...]) -> int | None:
    """The AS the origin sent the route to, skipping prepends; None if not visible."""
    origin = as_path[-1]
    for element in reversed(as_path):
        if element != origin:
            return element if isinstance(element, int) else None
    return None


def _names(asns: frozenset[int]) -> str:
    return ", ".join(f"AS{a}" for a in sorted(asns))


def check(
    update: Update,
    mon: Monitored,
    exact_origins: Callable[[], frozenset[PathElement]] = frozenset,
) -> Finding | None:
    if not update.as_path:
        return None  # a route from the collector's own AS: nobody to blame
    prefix, origin = update.prefix, update.as_path[-1]
    exact = prefix.length == mon.prefix.length
    of = "" if exact else f", a more-specific of {mon.prefix},"
    about = mon.name
    if isinstance(origin, frozenset):
        return Finding(
            "as-set-origin",
            prefix,
            None,
            about,
            f"{prefix}{of} is originated by the AS_SET {{{' '.join(map(str, sorted(origin)))}}}, "
            "so its origin cannot be checked (RFC 6472 deprecates AS_SETs).",
        )
    if not mon.announced:
        return Finding(
            "squat",
            prefix,
            origin,
            about,
            f"AS{origin} announces {prefix}{of} which we hold but never announce.",
        )
    if mon.any_origin:
        if not exact:
            seen = exact_origins()
            if origin not in seen:
                now = _names(frozenset(a for a in seen if isinstance(a, int))) or "nobody"
                return Finding(
                    "subprefix-origin",
                    prefix,
                    origin,
                    about,
                    f"AS{origin} originates {prefix}{of} which is monitored for "
                    f"more-specifics; {mon.prefix} itself is originated by {now} now.",
                )
    elif origin not in mon.origins:
        return Finding(
            "exact-origin" if exact else "subprefix-origin",
            prefix,
            origin,
            about,
            f"AS{origin} originates {prefix}{of} which only {_names(mon.origins)} may originate.",
        )
    hop = first_hop(update.as_path) if mon.upstreams else None
    if hop is not None and hop not in mon.upstreams:
        return Finding(
            "exact-upstream" if exact else "subprefix-upstream",
            prefix,
            hop,
            about,
            f"{prefix}{of} comes from AS{origin} through AS{hop}, which is not an allowed "
            f"upstream ({_names(mon.upstreams)}).",
        )
    if prefix.length > mon.max_length:
        return Finding(
            "too-specific",
            prefix,
            origin,
            about,
            f"AS{origin} announces {prefix}, longer than the max length /{mon.max_length} "
            f"allowed within {mon.prefix}.",
        )
    return None
