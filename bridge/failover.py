"""Which path to a peer carries traffic, and when traffic may return to a better one. Pure.

Failover needs nothing from here: each site's switch sends a segment's traffic toward a
peer through an OpenFlow fast-failover group over that peer's paths (controller.pipeline),
and OVS BFD (RFC 5880) on the paths' tunnel ports decides which ports are live. When the
active path dies, BFD declares it down and the switch moves to the next live bucket by
itself, with no controller and no process of ours in the loop.

Failback needs one thing more. A fast-failover group returns to a better bucket the moment
its port is live again, so a path that flaps would drag traffic back and forth. The
hold-down keeps a path that has been down out of the group's reach (OVS's
`bfd/set-forwarding PORT false`, which the group sees as a dead port) until its BFD
session has been up for `hold_down_s` without a break; every drop restarts the wait.
A path is only held while another path to the same peer is usable, so the hold-down never
leaves a peer unreachable: with nothing else up, a path that comes back is used at once.
The process that applies these decisions (`bridge.watch`) runs at the site, beside the
switch; if it stops, failover still works and failback is merely immediate.

With no path up at all, the last one that carried traffic keeps forwarding (last resort,
`bfd/set-forwarding PORT true`) until some path's session is up again. A session that
timed out needs BFD's three-way handshake again, at one packet a second while not up
(RFC 5880 section 6.8.3), so about a second; and a switch that waits for a CPU longer than
the detection time (a busy machine: the userspace datapath receives BFD in ovs-vswitchd's
main thread) times out every session it has at once, leaving the group no live bucket for
that second. Kept forwarding, a path whose session merely timed out carries on at once; a
path that really failed loses nothing that was not lost already. It is still WireGuard,
so fail-closed holds.

A peer reached only over routed (L3) segments has no segment tunnel to carry BFD; its
paths get BFD-only tunnels (bridge.plan), grouped here like a segment's (segment None),
and the watcher moves the routes with them.

A path that goes down and up again between two OVSDB reports (a few ms apart) fails
back at once, since the group saw it live; OVS's flap counter shows the bounce, and the
path is then held like any other. That is the one window the hold-down cannot close.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bridge.plan import SitePlan

Role = Literal["active", "standby", "held", "down"]


@dataclass(frozen=True)
class Path:
    """One path to a peer for one segment (None: a BFD-only tunnel, for the routed
    segments): a tunnel port of the site's switch."""

    port: str
    segment: str | None
    peer: str
    underlay: str


@dataclass(frozen=True)
class PathGroup:
    """A peer's paths for one segment, most preferred first: the buckets of one
    fast-failover group on the site's switch (or, segment None, the BFD-only tunnels the
    routes to a peer follow)."""

    segment: str | None
    peer: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Bfd:
    """A tunnel port's BFD session as OVS reports it (OVSDB Interface.bfd_status)."""

    state: str = ""  # "admin_down", "down", "init", "up"; "" before OVS reports one
    remote_state: str = ""
    flap_count: int = 0  # forwarding changes OVS counted (not while forwarding is forced)

    @property
    def up(self) -> bool:
        return self.state == "up"


def path_groups(plan: SitePlan) -> tuple[PathGroup, ...]:
    """The site's peers reached over more than one path (the tunnels with BFD), per segment,
    in the order the plan lists them: the config's order of preference."""
    groups: dict[tuple[str | None, str], list[Path]] = {}
    for t in plan.vxlan_devices():
        if t.bfd:
            groups.setdefault((t.segment, t.peer), []).append(
                Path(t.name, t.segment, t.peer, t.underlay)
            )
    return tuple(PathGroup(seg, peer, tuple(paths)) for (seg, peer), paths in groups.items())


@dataclass(frozen=True)
class Move:
    """Traffic of one group moved from one path to another (None: no path)."""

    segment: str | None
    peer: str
    before: str | None
    after: str | None
    failback: bool  # to a more preferred path


@dataclass
class HoldDown:
    """The hold-down of every path of a site. Feed it what OVS reports with `update`;
    it returns which ports must be held (forwarding forced off) and which released."""

    groups: tuple[PathGroup, ...]
    hold_down_s: float
    held: set[str] = field(default_factory=set)
    up_since: dict[str, float] = field(default_factory=dict)
    flaps: dict[str, int] = field(default_factory=dict)
    active: dict[tuple[str | None, str], str | None] = field(default_factory=dict)
    seen_up: set[str] = field(default_factory=set)  # ports that have been up at least once
    # group -> the path kept forwarding while none is up: the one that was active last
    last_resort: dict[tuple[str | None, str], str] = field(default_factory=dict)

    def update(self, now: float, bfd: Mapping[str, Bfd]) -> list[Move]:
        """Take the latest BFD report of every port at time `now`; return the moves of
        traffic this causes (by the switch's own rule: the first live path)."""
        for group in self.groups:
            for path in group.paths:
                self._observe(now, path.port, bfd.get(path.port, Bfd()))
        for group in self.groups:
            for path in group.paths:
                self._decide(now, group, path.port, bfd)
        moves = []
        for group in self.groups:
            key = (group.segment, group.peer)
            now_active = self._first_usable(group, bfd)
            before = self.active.get(key)
            if key in self.active and before != now_active:
                order = [p.port for p in group.paths]
                failback = (
                    now_active is not None
                    and before is not None
                    and order.index(now_active) < order.index(before)
                )
                moves.append(Move(group.segment, group.peer, before, now_active, failback))
            self.active[key] = now_active
            if now_active is not None:
                self.last_resort.pop(key, None)
            elif before is not None:
                self.last_resort[key] = before
        return moves

    @property
    def forced(self) -> set[str]:
        """The ports kept forwarding as their group's last resort."""
        return set(self.last_resort.values())

    def _observe(self, now: float, port: str, state: Bfd) -> None:
        expected = self.flaps.get(port, state.flap_count)
        flapped = state.flap_count > expected
        self.flaps[port] = max(expected, state.flap_count)
        if not state.up:
            self.up_since.pop(port, None)
        elif port not in self.seen_up:
            # Up for the first time (at start, or a path being brought up): nothing failed,
            # so nothing to wait for.
            self.up_since[port] = now - self.hold_down_s
        elif port not in self.up_since or (flapped and port not in self.held):
            # Back after a failure, or down and up again between two reports (the flap
            # counter moved): the wait starts now.
            self.up_since[port] = now
        if state.up:
            self.seen_up.add(port)

    def _decide(self, now: float, group: PathGroup, port: str, bfd: Mapping[str, Bfd]) -> None:
        others = any(p.port != port and self._usable(p.port, bfd) for p in group.paths)
        since = self.up_since.get(port)
        settled = since is not None and now - since >= self.hold_down_s
        if others and not settled:
            self.held.add(port)
        elif port in self.held:
            self.held.discard(port)
            if bfd.get(port, Bfd()).up:
                # OVS froze the port's forwarding flag (down) while it was held; releasing
                # an up port flips it once, which is ours, not a flap.
                self.flaps[port] = self.flaps.get(port, 0) + 1

    def _usable(self, port: str, bfd: Mapping[str, Bfd]) -> bool:
        return bfd.get(port, Bfd()).up and port not in self.held

    def _first_usable(self, group: PathGroup, bfd: Mapping[str, Bfd]) -> str | None:
        return next((p.port for p in group.paths if self._usable(p.port, bfd)), None)

    def next_release(self, now: float) -> float | None:
        """When the next held path that is up finishes its hold-down (to wake up then)."""
        due = [self.up_since[p] + self.hold_down_s for p in self.held if p in self.up_since]
        return min(due) if due else None

    def roles(self, bfd: Mapping[str, Bfd]) -> dict[str, Role]:
        return roles(self.groups, bfd, self.held)


def roles(groups: tuple[PathGroup, ...], bfd: Mapping[str, Bfd], held: set[str]) -> dict[str, Role]:
    """Each path's part: `active` carries the group's traffic (the first path that is up and
    not held), `standby` is up and next in line, `held` is up but in its hold-down, `down`
    has no BFD session up."""
    out: dict[str, Role] = {}
    for group in groups:
        active_found = False
        for path in group.paths:
            state = bfd.get(path.port, Bfd())
            if not state.up:
                out[path.port] = "down"
            elif path.port in held:
                out[path.port] = "held"
            elif not active_found:
                out[path.port] = "active"
                active_found = True
            else:
                out[path.port] = "standby"
    return out


def all_paths(groups: tuple[PathGroup, ...]) -> Iterator[Path]:
    for group in groups:
        yield from group.paths
