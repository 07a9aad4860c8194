"""What the engine reads of the guard: section, compiled once into plain values.

The engine, the detectors and the replay need no schema library: a `Policy` holds the
monitored prefixes as the detectors use them (`Monitored`), our own ASNs with their expected
neighbours, the thresholds, and which ASPA procedure applies to which peer. Built from a
validated `GuardConfig` (`Policy.of`), or loaded as it is from `policycache` by a replay of an
unchanged config, which then starts without importing pydantic at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from bgp_guard.monitored import Monitored, entries

if TYPE_CHECKING:
    from bgp_guard.config import GuardConfig


class OwnNeighbours(NamedTuple):
    """The ASes expected left (upstreams) and right (downstreams) of one of our ASNs in a
    path; None: that side is not checked."""

    upstreams: tuple[int, ...] | None
    downstreams: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class Policy:
    monitored: tuple[Monitored, ...]
    own_asns: dict[int, OwnNeighbours]
    min_peers: int
    visibility_min_withdrawn: int
    visibility_min_share: float
    resolve_after: float
    rpki_not_found: bool
    leak_scope: str  # monitored | all
    aspa_scope: str  # monitored | ours | all
    aspa_relationship: str  # for peers not in aspa_relationships
    aspa_relationships: dict[str, str]  # peer address -> relationship, for ASPA
    silent_after: float | None  # guard.feeds.silent_after

    @classmethod
    def of(cls, config: GuardConfig) -> Policy:
        relationships: dict[str, str] = {str(a): r for a, r in config.aspa.neighbours.items()}
        bgp = config.feeds.bgp
        for address, neighbour in bgp.neighbours.items() if bgp is not None else ():
            if neighbour.relationship is not None:
                relationships[str(address)] = neighbour.relationship
        return cls(
            monitored=tuple(entries(config)),
            own_asns={
                asn: OwnNeighbours(own.upstreams, own.downstreams)
                for asn, own in config.own_asns.items()
            },
            min_peers=config.min_peers,
            visibility_min_withdrawn=config.visibility_min_withdrawn,
            visibility_min_share=config.visibility_min_share,
            resolve_after=config.resolve_after,
            rpki_not_found=config.rpki_not_found,
            leak_scope=config.leak_scope,
            aspa_scope=config.aspa.scope,
            aspa_relationship=config.aspa.relationship,
            aspa_relationships=relationships,
            silent_after=config.feeds.silent_after,
        )
