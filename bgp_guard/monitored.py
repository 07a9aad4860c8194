"""A monitored prefix as the detectors use it: the config entry, pre-digested for speed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bgp_guard import communities
from bgp_guard.communities import Community, LargeCommunity
from bgp_guard.detect.path import PathCheck
from bgp_guard.prefixindex import PrefixIndex
from bgp_guard.update import Prefix

if TYPE_CHECKING:  # the schema is not imported by a replay that starts from a cached Policy
    from bgp_guard.config import GuardConfig, MonitoredPrefix


@dataclass(frozen=True, slots=True)
class Monitored:
    prefix: Prefix
    origins: frozenset[int]  # empty with any_origin
    upstreams: frozenset[int]  # empty: any neighbour is fine
    announced: bool
    max_length: int
    ignore_more_specifics: bool
    ignore: bool
    path_checks: tuple[PathCheck, ...]
    any_origin: bool = False  # origins: any
    name: str = ""  # str(prefix), made once: every finding about this prefix names it
    neighbours_only: bool = False
    flag_communities: frozenset[Community] = frozenset()
    flag_large_communities: frozenset[LargeCommunity] = frozenset()

    @classmethod
    def from_config(cls, prefix: Prefix, spec: MonitoredPrefix) -> Monitored:
        flagged = [communities.parse(c) for c in spec.flag_communities]
        return cls(
            prefix=prefix,
            origins=frozenset(() if spec.origins == "any" else spec.origins),
            upstreams=frozenset(spec.upstreams),
            announced=spec.announced,
            max_length=prefix.length if spec.max_length is None else spec.max_length,
            ignore_more_specifics=spec.ignore_more_specifics,
            ignore=spec.ignore,
            path_checks=tuple(PathCheck.from_rule(r) for r in spec.path_rules),
            any_origin=spec.origins == "any",
            neighbours_only=spec.neighbours_only,
            name=str(prefix),
            flag_communities=frozenset(c for c in flagged if len(c) == 2),
            flag_large_communities=frozenset(c for c in flagged if len(c) == 3),
        )


def entries(config: GuardConfig) -> list[Monitored]:
    return [Monitored.from_config(Prefix.parse(str(n)), s) for n, s in config.prefixes.items()]


def index(monitored: Iterable[Monitored]) -> PrefixIndex[Monitored]:
    out: PrefixIndex[Monitored] = PrefixIndex()
    for mon in monitored:
        out.add(mon.prefix, mon)
    return out
