"""Which path carries each site's traffic to each peer, followed while the demo runs.

Every site's switch decides this alone (fast-failover groups over BFD-watched tunnel ports,
bridge.failover); this only reads what the switches and the watchers' hold-down marks say,
the way `overcast bridge status` does, a few times a second. A change (traffic moving to
another carrier, or coming back) is told as it happens and kept for the report's picture.

    with PathLog(plan, t0, progress) as log:
        ...  # fail a carrier
    log.now()      # each path's role at the end
    log.detour()   # the moment the most traffic was off its preferred carrier
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.failover import path_groups
from bridge.watch import path_report
from controller.ovsdb import Ovsdb
from lab import switch
from lab.plan import LabPlan

INTERVAL = 0.2  # seconds between reads: well under the failover target, light on OVSDB


@dataclass(frozen=True)
class PathRole:
    """One path from `site` to `peer` for `segment` (None: a BFD-only path, which the
    routed segments follow) over one underlay network."""

    site: str
    peer: str
    segment: str | None
    underlay: str
    role: str  # bridge.failover.Role: active, standby, held, down
    bfd: str  # the BFD session's state as OVS reports it

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "peer": self.peer,
            "segment": self.segment,
            "underlay": self.underlay,
            "role": self.role,
            "bfd": self.bfd,
        }


@dataclass(frozen=True)
class Snapshot:
    at_s: float  # seconds since the story began
    paths: tuple[PathRole, ...]

    def carriers(self) -> dict[tuple[str, str, str | None], str | None]:
        """(site, peer, segment) -> the underlay carrying it, None when no path is up."""
        out: dict[tuple[str, str, str | None], str | None] = {}
        for p in self.paths:
            key = (p.site, p.peer, p.segment)
            if p.role == "active":
                out[key] = p.underlay
            else:
                out.setdefault(key, None)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 2), "paths": [p.as_dict() for p in self.paths]}


def read(plan: LabPlan, dbs: dict[str, Ovsdb], at_s: float) -> Snapshot:
    return Snapshot(
        at_s,
        tuple(
            PathRole(site, g["peer"], g["segment"], p["underlay"], p["role"], p["bfd"])
            for site, db in dbs.items()
            for g in path_report(plan.site(site).dataplane, db)
            for p in g["paths"]
        ),
    )


def moves(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, one line per kind of move, e.g.
    `isp-a -> isp-b: hq->branch, hq->cloud-a`."""
    old, new = before.carriers(), after.carriers()
    grouped: dict[tuple[str | None, str | None], list[str]] = {}
    for key, carrier in new.items():
        if old.get(key) != carrier:
            site, peer, _ = key
            grouped.setdefault((old.get(key), carrier), []).append(f"{site}->{peer}")
    return [
        f"{a or 'no path'} -> {b or 'no path'}: {', '.join(who)}" for (a, b), who in grouped.items()
    ]


class PathLog:
    def __init__(
        self, plan: LabPlan, t0: float, progress: Callable[[str], None], interval: float = INTERVAL
    ) -> None:
        self.plan, self.t0, self.progress, self.interval = plan, t0, progress, interval
        self.history: list[Snapshot] = []  # the first reading, then each one that differs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dbs: dict[str, Ovsdb] = {}

    def __enter__(self) -> PathLog:
        sites = [s for s in self.plan.sites if path_groups(s.dataplane)]
        self._dbs = {s.name: switch.ovsdb(s) for s in sites}
        self._sample()
        self._thread = threading.Thread(target=self._run, name="pathlog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for db in self._dbs.values():
            db.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception as exc:  # a site's OVSDB gone: the log ends, the story goes on
                self.progress(f"paths: no longer followed ({str(exc).splitlines()[0]})")
                return

    def _sample(self) -> None:
        snap = read(self.plan, self._dbs, time.monotonic() - self.t0)
        if not self.history:
            self.history.append(snap)
            return
        changed = moves(self.history[-1], snap)
        if changed or snap.paths != self.history[-1].paths:
            self.history.append(snap)
        for line in changed:
            self.progress(f"paths: {line}")

    def settle(self, timeout: float) -> bool:
        """Wait until every peer's traffic is on its preferred underlay again (a path back
        from a failure is held down a while first); False if it was not by `timeout`."""
        preferred = self.plan.underlays[0].name if self.plan.underlays else None

        def settled() -> bool:
            now = self.now()
            return now is not None and all(c == preferred for c in now.carriers().values())

        deadline = time.monotonic() + timeout
        while not settled():
            if time.monotonic() > deadline or self._stop.wait(self.interval):
                return False
        return True

    def now(self) -> Snapshot | None:
        return self.history[-1] if self.history else None

    def detour(self) -> Snapshot | None:
        """The snapshot with the most traffic off its preferred underlay (None if traffic
        never left it)."""
        preferred = self.plan.underlays[0].name if self.plan.underlays else None

        def off(s: Snapshot) -> int:
            return sum(1 for c in s.carriers().values() if c != preferred)

        worst = max(self.history, key=off, default=None)
        return worst if worst is not None and off(worst) else None
