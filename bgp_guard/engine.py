"""The guard: one update in, alert transitions out. Pure: no I/O, time comes from updates.

Per update: dedupe against the RIB (a re-announcement of the same path changes nothing),
release the events the peer's previous route carried, find the most specific monitored
prefix covering the update, and run the detectors that apply.

A `PeerDown` withdraws every route of that peer at once: the events its routes carried are
released and the monitored prefixes it carried count it as withdrawn (visibility). MRT files
record a dropped session only as a STATE_CHANGE, never as withdrawals.

Order: an update older (by its own timestamp) than the last one applied for the same peer
and prefix under a monitored prefix is dropped and counted (`stale`,
overcast_bgp_guard_stale_updates_total): merged collectors and RIS-live can deliver late,
and applying it would undo newer state. Visibility counts only routes our policy calls
legitimate: a peer whose route to a monitored prefix is hijacked no longer carries ours.

New VRPs (`replace_vrps`) re-validate the routes already held, but only those a changed VRP
covers: RFC 6811 section 2 decides a route's validity from its covering VRPs alone. The
prefixes announced under each monitored prefix are kept for this, so the cost follows the
ROA diff and the routes it covers, not the size of the RIB.

New ASPAs (`replace_aspas`) re-verify only the routes whose path crosses a customer AS whose
provider set changed: section 5.3 of the ASPA draft asks only the customers on the path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bgp_guard import monitored
from bgp_guard.aspa import AspaSet, changed_customers
from bgp_guard.asrel import AsRelationships
from bgp_guard.detect import (
    aspa,
    community,
    hijack,
    leak,
    neighbours,
    path,
    roa,
    rov,
    scope,
    visibility,
)
from bgp_guard.events import Event, EventTable, Finding, Key
from bgp_guard.metrics import Lazy
from bgp_guard.monitored import Monitored
from bgp_guard.policy import Policy
from bgp_guard.rib import Path, Rib, key_prefix, prefix_key
from bgp_guard.rpki import RoaChange, VrpSet, diff
from bgp_guard.update import (
    EndOfRib,
    FeedItem,
    PathElement,
    PeerDown,
    PeerRestarting,
    Prefix,
    Update,
)

if TYPE_CHECKING:  # a Guard built from a cached Policy never imports the schema
    from bgp_guard.config import GuardConfig

TICK = 1.0  # seconds of feed time between checks for events to resolve
# Findings by which our policy rejects a route to our exact prefix: such a route does not
# count for visibility. An AS_SET origin is not among them: it cannot be judged either way.
ILLEGITIMATE = frozenset(("exact-origin", "exact-upstream", "squat", "beyond-neighbours"))
_STALE = Lazy(
    "Counter",
    "overcast_bgp_guard_stale_updates",
    "Updates dropped because the same peer had already said something newer (by the "
    "updates' own timestamps) about the same monitored prefix.",
)
COMPACT_SLACK = 100_000  # unused interned paths tolerated before a compaction
GOVERNING_MAX = 1 << 18  # prefixes whose governing monitored prefix is remembered


class Guard:
    def __init__(
        self,
        config: GuardConfig | Policy,
        vrps: VrpSet | None = None,
        asrel: AsRelationships | None = None,
        aspas: AspaSet | None = None,
    ) -> None:
        self.policy = policy = config if isinstance(config, Policy) else Policy.of(config)
        self.vrps = vrps
        self.asrel = asrel
        self.aspa = None if aspas is None else aspa.AspaCheck(policy, aspas)
        self._slot_asn: list[int] = []  # peer AS per RIB slot, for re-verifying paths
        # Whether routes outside the monitored prefixes get path checks at all.
        self._beyond_monitored = (asrel is not None and policy.leak_scope == "all") or (
            aspas is not None and policy.aspa_scope != "monitored"
        )
        self.monitored_list = list(policy.monitored)
        self.monitored = monitored.index(self.monitored_list)
        self.table = EventTable(policy.min_peers, policy.resolve_after)
        self.rib = Rib()
        self.updates = 0
        self.peer_downs = 0
        self._own = frozenset(policy.own_asns)
        # Whether a route outside the monitored prefixes can ever matter: a path check on it
        # now, or an ASPA reload later (replace_aspas re-verifies every held route then). If
        # not, such an update is counted and dropped before the RIB: most of a full feed.
        self._keep_all = self._beyond_monitored or policy.aspa_scope != "monitored"
        self._visibility: dict[int, visibility.Visibility] = {}
        # Prefix keys announced under each monitored prefix (the one governing them), for
        # re-validation on a VRP reload. Pruned then, when no peer holds a key any more.
        self._held: dict[Prefix, set[int]] = {m.prefix: set() for m in self.monitored_list}
        self._next_tick = float("-inf")
        # When each route under a monitored prefix last changed (feed time), to drop an
        # update older than that: the order of what a peer said is kept per prefix.
        self._applied: dict[tuple[int, int], float] = {}
        self.stale = 0
        # The governing monitored prefix of each prefix seen: feeds repeat the same few
        # thousand prefixes, and the monitored prefixes do not change under a Guard.
        self._governing: dict[Prefix, Monitored | None] = {}

    def governing(self, update: Update) -> Monitored | None:
        """The most specific monitored prefix covering the update, unless it opts out."""
        prefix = update.prefix
        known = self._governing
        if prefix in known:
            return known[prefix]
        if len(known) >= GOVERNING_MAX:
            known.clear()
        found = self.monitored.longest(prefix)
        mon = None
        if found is not None:
            length, (mon, *_) = found
            if mon.ignore or (mon.ignore_more_specifics and length != prefix.length):
                mon = None
        known[prefix] = mon
        return mon

    def process(self, update: FeedItem) -> list[dict[str, Any]]:
        """Feed one update (or peer event); returns the event transitions it caused (usually
        none)."""
        if type(update) is not Update:  # cheaper than isinstance
            return self._peer_event(update)
        self.updates += 1
        now = update.time
        table = self.table
        if now >= self._next_tick:
            table.tick(now)
            self._next_tick = now + TICK
        if update.announce and not update.as_path:
            # An empty AS_PATH comes over iBGP and means the peer's own AS originated the
            # route (RFC 4271 section 5.1.2); judge it as such, not as "no origin".
            update = update._replace(as_path=(update.peer_asn,))
        mon = self.governing(update)
        if mon is None and not self._keep_all and not self._ours(update):
            return table.drain() if table.emitted else []
        rib = self.rib
        slot = rib.slot(update.peer_ip, update.path_id)
        if self.aspa is not None and slot == len(self._slot_asn):  # a new slot
            self._slot_asn.append(update.peer_asn)
        key = prefix_key(update.prefix)
        route = (slot, key)
        applied = self._applied
        if applied and now < applied.get(route, now):
            # Older than what this peer last said about this prefix (merged collectors,
            # RIS-live reordering): the newer state stands, this one is dropped.
            self.stale += 1
            _STALE.inc()
            return table.drain() if table.emitted else []
        if not rib.apply(slot, key, update.as_path if update.announce else None):
            return table.drain() if table.emitted else []
        if table.by_route:
            table.release(route, now)
        findings: list[Finding] = []
        if mon is not None:
            applied[route] = now
        if update.announce:
            if mon is not None:
                self._held[mon.prefix].add(key)
                findings += self._about_ours(update, mon)
            elif self._beyond_monitored:
                findings += self._path_checks(update, None)
            if self._ours(update):
                findings += neighbours.check(update, self.policy.own_asns)
            for finding in findings:
                table.observe(
                    finding,
                    route,
                    update.peer_ip,
                    now,
                    update.as_path,
                    update.communities,
                    update.large_communities,
                )
        if mon is not None and mon.prefix.length == update.prefix.length:
            # Only a route our policy calls legitimate makes the prefix visible: a peer
            # whose route to it is hijacked no longer carries ours.
            legit = update.announce and not any(f.kind in ILLEGITIMATE for f in findings)
            self._visibility_of(update.prefix, key, slot, update.peer_ip, legit, now)
        return table.drain() if table.emitted else []

    def wanted(self) -> Callable[[Prefix], bool] | None:
        """For feeds that can skip a message before decoding it: whether an update to a
        prefix can matter to this guard. None when any route can (path checks beyond the
        monitored prefixes, or our own ASNs on any path)."""
        if self._keep_all or self._own:
            return None
        longest = self.monitored.longest
        return lambda prefix: longest(prefix) is not None

    def _ours(self, update: Update) -> bool:
        """Whether one of our own ASNs is on the update's path (a withdrawal has none: it
        must reach the RIB if the route it withdraws got there)."""
        own = self._own
        if not own:
            return False
        return not update.announce or not own.isdisjoint(update.as_path)

    def _about_ours(self, update: Update, mon: Monitored) -> list[Finding]:
        # Run for most updates: only the checks this prefix and this guard ask for are called.
        out = []
        found = hijack.check(update, mon, lambda: self._exact_origins(mon))
        if found is not None:
            out.append(found)
        if mon.neighbours_only:
            found = scope.check(update, mon)
            if found is not None:
                out.append(found)
        if mon.flag_communities or mon.flag_large_communities:
            found = community.check(update, mon)
            if found is not None:
                out.append(found)
        if self.vrps is not None:
            found = rov.check(
                update.prefix, update.origin, self.vrps, mon.name, self.policy.rpki_not_found
            )
            if found is not None:
                out.append(found)
        if self.aspa is not None or self.asrel is not None:
            out += self._path_checks(update, mon)
        if mon.path_checks:
            out += path.check(update, mon.path_checks, mon.name)
        return out

    def _exact_origins(self, mon: Monitored) -> frozenset[PathElement]:
        """The origins of the routes held to `mon`'s exact prefix (for `origins: any`)."""
        return frozenset(path[-1] for _, path in self.rib.holders(prefix_key(mon.prefix)))

    def _path_checks(self, update: Update, mon: Monitored | None) -> list[Finding]:
        """Route-leak (CAIDA) and ASPA findings, as one event where both see a leak. Beyond
        the monitored prefixes, ASPA runs as guard.aspa.scope says and the CAIDA check as
        leak_scope does."""
        found = leaked = None
        if mon is not None:
            about: str | Prefix | None = mon.name
            if self.asrel is not None:
                leaked = leak.check(update, self.asrel, mon.name)
        else:
            about = self._aspa_about(update)
            if self.asrel is not None and self.policy.leak_scope == "all":
                leaked = leak.check(update, self.asrel, str(update.prefix))
        if self.aspa is not None and about is not None:
            found = self.aspa.check(
                update.prefix, update.as_path, update.peer_ip, update.peer_asn, about
            )
        return aspa.merged(found, leaked)

    def _aspa_about(self, update: Update) -> str | Prefix | None:
        """What of ours an ASPA finding on a route outside the monitored prefixes is about
        (the prefix itself, formatted only if a finding needs it), or None if
        guard.aspa.scope leaves the route unchecked."""
        scope = None if self.aspa is None else self.aspa.scope
        if scope == "all":
            return update.prefix
        if scope == "ours" and self._own and not self._own.isdisjoint(update.as_path):
            return f"AS{next(a for a in update.as_path if a in self._own)}"
        return None

    def _peer_event(self, item: FeedItem) -> list[dict[str, Any]]:
        """A PeerDown withdraws all of the peer's routes, as if an Update had withdrawn each
        one. A graceful restart (RFC 4724) withdraws nothing: the routes are marked stale,
        and only those still stale at the peer's End-of-RIB are withdrawn."""
        if isinstance(item, PeerRestarting):
            self.rib.mark_stale(item.peer_ip)
            return []
        if isinstance(item, PeerDown):
            self.peer_downs += 1
            gone = self.rib.drop_peer(item.peer_ip)
        elif isinstance(item, EndOfRib):
            gone = self.rib.sweep_stale(item.peer_ip, item.version)
        else:
            raise TypeError(f"not a peer event: {item!r}")
        now = item.time
        table = self.table
        table.tick(now)
        watched = self._visibility
        for slot, routes in gone:
            for key in routes:
                if table.by_route:
                    table.release((slot, key), now)
                if key in watched:
                    self._visibility_of(key_prefix(key), key, slot, item.peer_ip, False, now)
        return table.drain()

    def _visibility_of(
        self, prefix: Prefix, key: int, slot: int, peer_ip: str, announce: bool, now: float
    ) -> None:
        state = self._visibility.get(key)
        if state is None:
            state = self._visibility[key] = visibility.Visibility()
        flipped = visibility.observe(
            state,
            prefix,
            slot,
            peer_ip,
            announce,
            self.policy.visibility_min_withdrawn,
            self.policy.visibility_min_share,
        )
        if flipped is not None:
            self.table.condition(flipped, state.lost, state.withdrawn_by(), now)

    def finish(self, now: float) -> list[dict[str, Any]]:
        """Resolve what is due at `now` (end of a replay, or a timer in a live feed), and
        drop unused interned AS paths once they outnumber the routes."""
        self.table.tick(now)
        if self.rib.distinct_paths > 2 * len(self.rib) + COMPACT_SLACK:
            self.rib.compact()
        return self.table.drain()

    def feed_outage(self, feed: str, outage: str | None, now: float) -> list[dict[str, Any]]:
        """A live feed stopped reporting (`outage` says why) or is back (None): a `feed-down`
        condition event, so that the sinks say when the guard cannot see. The feed's routes
        are not withdrawn: nobody withdrew them."""
        back = f"{feed} is back; what it missed meanwhile is not replayed."
        return self.feed_health("feed-down", feed, outage, back, now)

    def feed_health(
        self, kind: str, subject: str, problem: str | None, recovered: str, now: float
    ) -> list[dict[str, Any]]:
        """A condition event about one of our own feeds: `kind` is feed-down (it cannot
        see), feed-silent (no update past guard.feeds.silent_after) or peer-down (a BGP
        session or a BMP router's peer left Established); `subject` names the feed or the
        peer; `problem` says what is wrong, None when it is over (`recovered` says so)."""
        finding = Finding(kind, None, None, subject, problem or recovered)
        self.table.condition(finding, problem is not None, set(), now)
        return self.table.drain()

    def replace_vrps(self, vrps: VrpSet, now: float) -> list[dict[str, Any]]:
        """Validate with `vrps` from now on. Returns one `roa-change` event per added or
        removed ROA that touches a monitored prefix, then the transitions of re-validating
        the routes held to prefixes a changed ROA covers: RPKI events raised for routes that
        became invalid (or not-found, if reported), resolved for routes that no longer are."""
        old = self.vrps or VrpSet(())
        changes = diff(old, vrps)
        events = [
            Event(f, now, now, state="ongoing", changed_at=now).to_dict()
            for f in roa.check(old, changes, self.monitored)
        ]
        self.vrps = vrps
        for key, mon in self._covered_routes(changes).items():
            self._revalidate(key, mon, vrps, now)
        return events + self.table.drain()

    def _covered_routes(self, changes: list[RoaChange]) -> dict[int, Monitored]:
        """Prefix keys held under monitored prefixes that a changed VRP covers, each with the
        monitored prefix that governs it."""
        out: dict[int, Monitored] = {}
        for change in changes:
            covered = change.vrp.prefix
            for mon in roa.overlapping(self.monitored, covered):
                held = self._held.get(mon.prefix)
                if not held:
                    continue
                if covered.covers(mon.prefix):
                    out.update(dict.fromkeys(held, mon))
                else:  # a ROA for a more-specific of ours: only what lies inside it
                    out.update((k, mon) for k in held if covered.covers(key_prefix(k)))
        return out

    def _revalidate(self, key: int, mon: Monitored, vrps: VrpSet, now: float) -> None:
        """Decide the RPKI finding of every route to `key` again, against `vrps`."""
        holders = self.rib.holders(key)
        if not holders:
            self._held[mon.prefix].discard(key)  # withdrawn by every peer since
            return
        prefix, about, table = key_prefix(key), mon.name, self.table
        # Validity depends on prefix and origin only: decided once per origin, not per peer.
        decided: dict[PathElement, Finding | None] = {}
        restated: dict[Key, Finding] = {}
        for slot, as_path in holders:
            origin = as_path[-1]
            if origin in decided:
                found = decided[origin]
            else:
                found = decided[origin] = rov.check(
                    prefix, origin, vrps, about, self.policy.rpki_not_found
                )
            route = (slot, key)
            carried = False
            for event in list(table.by_route.get(route, ())):
                old = event.finding
                if old.kind not in rov.KINDS:
                    continue
                if found is not None and old.key == found.key:
                    carried = True
                    continue
                why = restated.get(old.key)
                if why is None:
                    why = restated[old.key] = rov.cleared(old, prefix, origin, vrps)
                table.clear(route, event, why, now)
            if found is not None and not carried:
                table.observe(found, route, self.rib.peers[slot], now, as_path)

    def replace_aspas(self, aspas: AspaSet, now: float) -> list[dict[str, Any]]:
        """Verify with `aspas` from now on. Re-verifies the routes held (to monitored prefixes,
        or all that guard.aspa.scope covers) whose path crosses a customer AS whose provider
        set changed; returns the aspa-invalid (and route-leak) transitions that caused."""
        if self.aspa is None:
            self.aspa = aspa.AspaCheck(self.policy, aspas)
            self._slot_asn = [0] * len(self.rib.peers)  # unknown: verified without step 2
            self._beyond_monitored |= self.policy.aspa_scope != "monitored"
            changed = aspas.customers()
        else:
            changed = changed_customers(self.aspa.aspas, aspas)
            self.aspa.aspas = aspas
        for slot, key, as_path in self._routes_through(changed) if changed else ():
            self._reverify(slot, key, as_path, now)
        return self.table.drain()

    def _routes_through(self, asns: set[int]) -> list[tuple[int, int, Path]]:
        """(slot, prefix key, AS path) of the routes ASPA checks whose path crosses `asns`."""
        assert self.aspa is not None
        candidates: Iterable[tuple[int, int, Path]]
        if self.aspa.scope == "monitored":
            candidates = (
                (slot, key, as_path)
                for keys in self._held.values()
                for key in keys
                for slot, as_path in self.rib.holders(key)
            )
        else:
            candidates = self.rib.items()
        return [r for r in candidates if not asns.isdisjoint(r[2])]

    def _reverify(self, slot: int, key: int, as_path: Path, now: float) -> None:
        """Decide the ASPA and route-leak findings of one held route again."""
        peer = self.rib.peers[slot]
        asn = self._slot_asn[slot] if slot < len(self._slot_asn) else 0
        update = Update(now, peer, asn, key_prefix(key), True, as_path)
        if not asn:  # peer AS unknown (ASPA was off when the route came): skip step 2
            update = update._replace(peer_asn=as_path[0] if type(as_path[0]) is int else 0)
        found = self._path_checks(update, self.governing(update) if self.monitored else None)
        route, table = (slot, key), self.table
        keys = {f.key for f in found}
        carried = set()
        for event in list(table.by_route.get(route, ())):
            if event.finding.kind in aspa.PATH_KINDS:
                carried.add(event.finding.key)
                if event.finding.key not in keys:
                    table.clear(route, event, aspa.cleared(event.finding, found, as_path), now)
        for finding in found:
            if finding.key not in carried:
                table.observe(finding, route, peer, now, as_path)

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {"resolved": self.table.resolved} if self.table.resolved else {}
        for event in self.table.events.values():
            states[event.state] = states.get(event.state, 0) + 1
        return {
            "updates": self.updates,
            "peer_downs": self.peer_downs,
            "stale": self.stale,
            "rib_routes": len(self.rib),
            "rib_paths": self.rib.distinct_paths,
            "peers": len(set(self.rib.peers)),
            "events": states,
        }
