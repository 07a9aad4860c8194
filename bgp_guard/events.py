"""Alert events: what detectors find, keyed and tracked through their life.

A detector returns a `Finding` for one route (one peer's path to one prefix). The
`EventTable` folds findings into `Event`s keyed by (type, prefix, offending AS):

    pending --(seen by min_peers peers)--> ongoing --(no peer carries it)--> withdrawn
    withdrawn --(quiet for resolve_after seconds)--> resolved
    withdrawn/resolved --(seen again)--> ongoing

Condition events (visibility loss) go ongoing -> resolved when the condition clears, and so
does an RPKI event whose routes a VRP reload stopped flagging (`clear`). Every
transition out of pending is emitted once, as a plain dict ready for a sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bgp_guard.communities import Community, LargeCommunity
from bgp_guard.metrics import Lazy
from bgp_guard.update import PathElement, Prefix

_TRANSITIONS = Lazy(
    "Counter",
    "overcast_bgp_guard_events",
    "Alert event transitions emitted by the BGP guard, by event type and new state.",
    ["type", "state"],
)

# ARTEMIS taxonomy (Sermpezis et al., "ARTEMIS: Neutralizing BGP Hijacking within a
# Minute", 2018): prefix dimension (E exact, S sub-prefix, Q squatting) | path dimension
# (0 origin, 1 first hop) | data plane | policy.
ARTEMIS = {
    "exact-origin": "E|0|-|-",
    "exact-upstream": "E|1|-|-",
    "subprefix-origin": "S|0|-|-",
    "subprefix-upstream": "S|1|-|-",
    "squat": "Q|0|-|-",
}

Route = tuple[int, int]  # (peer slot, prefix key): one peer's route to one prefix
Key = tuple[str, Prefix | None, int | None]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # e.g. "exact-origin"; see ARTEMIS for the hijack types
    prefix: Prefix | None  # the announced prefix; None for per-AS alerts
    offender: int | None  # the offending AS, when there is one
    about: str  # what of ours is affected: a monitored prefix or "AS64500"
    rationale: str  # one sentence: why it fired

    @property
    def key(self) -> Key:
        return (self.kind, self.prefix, self.offender)


@dataclass(slots=True)
class Event:
    finding: Finding
    first_seen: float
    last_seen: float
    state: str = "pending"
    peers: set[str] = field(default_factory=set)  # every peer that saw it
    carriers: set[Route] = field(default_factory=set)  # routes that carry it now
    example_path: tuple[PathElement, ...] = ()
    changed_at: float = 0.0
    # The communities of the route that raised it (none known for routes re-validated
    # after a VRP or ASPA reload: the RIB keeps paths only).
    example_communities: tuple[Community, ...] = ()
    example_large_communities: tuple[LargeCommunity, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        f = self.finding
        out = {
            "type": f.kind,
            "artemis": ARTEMIS.get(f.kind),
            "state": self.state,
            "time": self.changed_at,  # when it entered this state
            "prefix": None if f.prefix is None else str(f.prefix),
            "offending_as": f.offender,
            "about": f.about,
            "rationale": f.rationale,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "peer_count": len(self.peers),
            "peers": sorted(self.peers),
            "example_path": [
                sorted(e) if isinstance(e, frozenset) else e for e in self.example_path
            ],
        }
        # The route's communities, when it had any (RFC 1997, RFC 8092).
        if self.example_communities:
            out["communities"] = [f"{a}:{b}" for a, b in self.example_communities]
        if self.example_large_communities:
            large = self.example_large_communities
            out["large_communities"] = [f"{a}:{b}:{c}" for a, b, c in large]
        return out


class EventTable:
    def __init__(self, min_peers: int = 1, resolve_after: float = 300.0) -> None:
        self.min_peers = min_peers
        self.resolve_after = resolve_after
        self.events: dict[Key, Event] = {}
        self.by_route: dict[Route, list[Event]] = {}
        self.emitted: list[dict[str, Any]] = []  # transitions not yet handed to sinks
        self.resolved = 0  # events resolved and dropped from `events`
        # Events no route carries any more (withdrawn, or pending), and since when: after
        # resolve_after seconds they are resolved (or, if pending, dropped unannounced),
        # so a long-running watch does not accumulate them.
        self._idle: dict[Key, tuple[Event, float]] = {}

    def _emit(self, event: Event, state: str, now: float) -> None:
        event.state = state
        event.changed_at = now
        self.emitted.append(event.to_dict())
        _TRANSITIONS.labels(event.finding.kind, state).inc()

    def observe(
        self,
        finding: Finding,
        route: Route,
        peer: str,
        now: float,
        as_path: tuple[PathElement, ...],
        communities: tuple[Community, ...] = (),
        large_communities: tuple[LargeCommunity, ...] = (),
    ) -> None:
        """A route that `finding` applies to was announced."""
        event = self.events.get(finding.key)
        if event is None:
            event = self.events[finding.key] = Event(
                finding,
                now,
                now,
                example_path=as_path,
                example_communities=communities,
                example_large_communities=large_communities,
            )
        elif self._idle:
            self._idle.pop(finding.key, None)
        event.last_seen = now
        event.peers.add(peer)
        if route not in event.carriers:
            event.carriers.add(route)
            self.by_route.setdefault(route, []).append(event)
        if event.state == "pending" and len(event.peers) >= self.min_peers:
            self._emit(event, "ongoing", now)
        elif event.state == "withdrawn":
            event.finding = finding
            event.example_path = as_path
            event.example_communities = communities
            event.example_large_communities = large_communities
            self._emit(event, "ongoing", now)

    def release(self, route: Route, now: float) -> None:
        """`route` was withdrawn or replaced: it no longer carries what it carried."""
        for event in self.by_route.pop(route, ()):
            event.carriers.discard(route)
            if not event.carriers:
                self._idle[event.finding.key] = (event, now)
                if event.state == "ongoing":
                    self._emit(event, "withdrawn", now)

    def clear(self, route: Route, event: Event, finding: Finding, now: float) -> None:
        """`event` no longer applies to `route`, which is still announced (a VRP reload made
        it valid, say). With no route left carrying it, the event is resolved at once, with
        `finding` saying why; it is not withdrawn, since nothing was. A pending event that
        never reached min_peers is dropped unannounced."""
        carried = self.by_route[route]
        carried.remove(event)
        if not carried:
            del self.by_route[route]
        event.carriers.discard(route)
        if event.carriers:
            return
        key = event.finding.key
        del self.events[key]
        self._idle.pop(key, None)
        if event.state == "ongoing":
            event.finding = finding
            event.last_seen = now
            self._emit(event, "resolved", now)
            self.resolved += 1

    def condition(self, finding: Finding, active: bool, peers: set[str], now: float) -> None:
        """Set a condition-type event (e.g. visibility loss) on or off."""
        event = self.events.get(finding.key)
        if active:
            if event is None:
                event = self.events[finding.key] = Event(finding, now, now)
            event.last_seen = now
            event.peers = set(peers)
            if event.state != "ongoing":
                event.finding = finding
                self._emit(event, "ongoing", now)
        elif event is not None and event.state == "ongoing":
            event.finding = finding
            event.last_seen = now
            self._emit(event, "resolved", now)
            del self.events[finding.key]
            self.resolved += 1

    def tick(self, now: float) -> None:
        """Resolve events that stayed withdrawn for `resolve_after` seconds; drop pending
        ones nobody carried for as long."""
        for key, (event, since) in list(self._idle.items()):
            if now - since >= self.resolve_after:
                del self._idle[key], self.events[key]
                if event.state == "withdrawn":
                    self._emit(event, "resolved", now)
                    self.resolved += 1

    def drain(self) -> list[dict[str, Any]]:
        out, self.emitted = self.emitted, []
        return out
