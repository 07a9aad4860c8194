"""Visibility of a monitored prefix: lost when N of the M peers that carried it withdrew it
(N at least `min_withdrawn`, N/M at least `min_share`), regained when that no longer holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgp_guard.events import Finding
from bgp_guard.update import Prefix


@dataclass(slots=True)
class Visibility:
    carried: dict[int, str] = field(default_factory=dict)  # peer slot -> peer, ever carried
    carrying: set[int] = field(default_factory=set)
    lost: bool = False

    def withdrawn_by(self) -> set[str]:
        return {peer for slot, peer in self.carried.items() if slot not in self.carrying}


def observe(
    state: Visibility,
    prefix: Prefix,
    slot: int,
    peer: str,
    announce: bool,
    min_withdrawn: int,
    min_share: float = 0.0,
) -> Finding | None:
    """Record one peer's announce or withdraw of `prefix`; a Finding when visibility flips
    (then `state.lost` says which way)."""
    if announce:
        state.carried[slot] = peer
        state.carrying.add(slot)
    elif slot in state.carrying:
        state.carrying.discard(slot)
    else:
        return None
    withdrawn = len(state.carried) - len(state.carrying)
    lost = withdrawn >= min_withdrawn and withdrawn >= min_share * len(state.carried)
    if lost == state.lost:
        return None
    state.lost = lost
    of = f"{withdrawn} of the {len(state.carried)} peers that carried it"
    return Finding(
        "visibility-loss",
        prefix,
        None,
        str(prefix),
        f"{prefix} was withdrawn by {of}."
        if lost
        else f"{prefix} is visible again: withdrawn by only {of}.",
    )
