"""New neighbours of our own ASNs: an AS appears next to ours that the config does not list.

In a path (collector side first) the AS left of ours heard the route from us: an upstream.
The AS right of ours sent it to us: a downstream (BGPalerter's left/right-side ASes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bgp_guard.events import Finding
from bgp_guard.update import PathElement, Update

if TYPE_CHECKING:
    from bgp_guard.policy import OwnNeighbours


def _neighbour(path: tuple[PathElement, ...], i: int, step: int) -> int | None:
    own = path[i]
    i += step
    while 0 <= i < len(path):
        if path[i] != own:
            element = path[i]
            return element if isinstance(element, int) else None
        i += step
    return None


def check(update: Update, own_asns: Mapping[int, OwnNeighbours]) -> list[Finding]:
    out = []
    path = update.as_path
    for i, element in enumerate(path):
        own = own_asns.get(element) if isinstance(element, int) else None
        if own is None or (i > 0 and path[i - 1] == element):
            continue
        for kind, known, step in (
            ("new-upstream", own.upstreams, -1),
            ("new-downstream", own.downstreams, 1),
        ):
            other = _neighbour(path, i, step)
            if known is not None and other is not None and other not in known:
                side = "upstream" if step < 0 else "downstream"
                out.append(
                    Finding(
                        kind,
                        None,
                        other,
                        f"AS{element}",
                        f"AS{other} appears as a new {side} of AS{element} in the path to "
                        f"{update.prefix}; it is not in own_asns.{element}.{side}s.",
                    )
                )
    return out
