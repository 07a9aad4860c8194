"""A no-export style scope (`neighbours_only`): the prefix may reach the origin's direct
neighbours and nobody beyond them, as if the origin had tagged it NO_EXPORT (RFC 1997)
towards each of them. A path that shows a third AS names the neighbour that passed it on.

The path is read with prepends collapsed: [P, N, N, O] is O -> N -> P. The collector's (or
our) peer is part of the path, so a peer that is itself the neighbour sees [N, O]: fine.
"""

from __future__ import annotations

from bgp_guard.events import Finding
from bgp_guard.monitored import Monitored
from bgp_guard.update import PathElement, Update


def _collapsed(as_path: tuple[PathElement, ...]) -> list[PathElement]:
    out: list[PathElement] = []
    for element in as_path:
        if not out or out[-1] != element:
            out.append(element)
    return out


def check(update: Update, mon: Monitored) -> Finding | None:
    hops = _collapsed(update.as_path)
    if len(hops) <= 2:
        return None
    origin, passer, receiver = hops[-1], hops[-2], hops[-3]
    if not isinstance(passer, int) or not isinstance(origin, int):
        return None  # an AS_SET names no single AS to blame
    beyond = "an AS_SET" if isinstance(receiver, frozenset) else f"AS{receiver}"
    path = " ".join(str(e) if isinstance(e, int) else "{set}" for e in update.as_path)
    return Finding(
        "beyond-neighbours",
        update.prefix,
        passer,
        mon.name,
        f"{update.prefix} must stay with AS{origin}'s direct neighbours (neighbours_only), "
        f"but AS{passer} passed it on to {beyond} (path {path}).",
    )
