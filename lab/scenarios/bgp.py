"""What the BGP scenarios (`hijack`, `leak`) share: a BGP lab of real routers and our guard,
a quiet baseline, and one incident that the guard must open when it starts and close when
it ends, each notice read from the guard's JSON-lines sink and timed.

Figures are seconds from the router command that starts (or ends) the incident to the
notice's arrival in the sink: BGP propagation through the routers, the guard's detection,
its state file and its delivery, all real."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.bgp import build as bgp_build
from lab.bgp import guard
from lab.bgp.plan import BgpLabPlan, Topology
from lab.scenarios import Check, Progress

NOTICE_TIMEOUT = 20.0  # seconds for an open or a close to reach the sink


def build(topology: Topology, state_dir: Path, progress: Progress) -> BgpLabPlan:
    plan = bgp_build.up(topology, state_dir, progress)
    progress(f"lab {plan.lab_id}: waiting for BGP to converge and the guard to hold every route")
    return plan


def baseline(plan: BgpLabPlan) -> list[Check]:
    """BGP converged, and the guard holds the legitimate routes without an alert."""
    seconds = bgp_build.wait_converged(plan)
    said = guard.notices(plan)
    routes = plan.guard_routes()
    return [
        Check(
            "BGP converged",
            True,
            f"{len(plan.routers)} routers Established, the guard holds {routes} routes "
            f"after {seconds:.1f} s",
            {"seconds": round(seconds, 3), "guard_routes": routes},
        ),
        Check(
            "no alert for legitimate routes",
            not said,
            f"{len(said)} notices" + (f": {said[0]['headline']}" if said else ""),
            {"notices": len(said)},
        ),
    ]


@dataclass(frozen=True)
class Incident:
    """Something a router does that the guard must alert on, and its undoing."""

    what: str  # "AS64511 announces 203.0.113.128/25"
    undo: str  # "AS64511 withdraws it"
    event_type: str  # the guard's event type, e.g. "subprefix-origin"
    start: Callable[[], None]
    end: Callable[[], None]


@dataclass(frozen=True)
class Outcome:
    opened: guard.Arrival | None
    closed: guard.Arrival | None
    ongoing: list[dict[str, Any]]  # the status page's open events once the open arrived
    notices: list[dict[str, Any]]  # every notice about the event, at the end

    @property
    def event(self) -> dict[str, Any]:
        """The event as the open notice told it."""
        assert self.opened is not None
        event: dict[str, Any] = self.opened.notice["event"]
        return event

    @property
    def seconds_to_alert(self) -> float:
        assert self.opened is not None
        return self.opened.seconds


def run(plan: BgpLabPlan, incident: Incident, progress: Progress) -> Outcome:
    def of_type(notice: str) -> Callable[[dict[str, Any]], bool]:
        return lambda n: n["notice"] == notice and n["event"]["type"] == incident.event_type

    before = len(guard.notices(plan))  # an earlier incident's notices (bench/, a re-run)
    progress(f"{incident.what}")
    since = time.monotonic()
    incident.start()
    opened = guard.wait_notice(plan, of_type("open"), since, NOTICE_TIMEOUT, before)
    ongoing = guard.status(plan)["ongoing"] if opened else []
    progress(f"{incident.undo}")
    since = time.monotonic()
    incident.end()
    closed = (
        guard.wait_notice(plan, of_type("close"), since, NOTICE_TIMEOUT, before) if opened else None
    )
    key = opened.notice["key"] if opened else None
    about = [n for n in guard.notices(plan)[before:] if n["key"] == key]
    return Outcome(opened, closed, ongoing, about)


def checks(
    incident: Incident, outcome: Outcome, alert: Callable[[Outcome], Check], name: str
) -> list[Check]:
    """The checks every incident gets around its own `alert` check (what the open says,
    judged once there is one)."""
    opened, closed = outcome.opened, outcome.closed
    if opened is None:
        return [
            Check(
                name,
                False,
                f"no {incident.event_type} alert within {NOTICE_TIMEOUT:g} s of: {incident.what}",
            )
        ]
    key = opened.notice["key"]
    in_state = [e for e in outcome.ongoing if e["key"] == key]
    return [
        alert(outcome),
        Check(
            "alert in the guard's state",
            bool(in_state),
            "open on the status page (SQLite state)" if in_state else "not on the status page",
            {"ongoing": len(outcome.ongoing)},
        ),
        Check(
            "alert closed",
            closed is not None,
            f"{closed.notice['label']} {closed.seconds:.2f} s after: {incident.undo}"
            if closed
            else f"no close within {NOTICE_TIMEOUT:g} s of: {incident.undo}",
            {
                "seconds_to_clear": round(closed.seconds, 3) if closed else None,
                "label": closed.notice["label"] if closed else None,
            },
        ),
        Check(
            "one open and one close",
            [n["notice"] for n in outcome.notices] == ["open", "close"],
            ", ".join(n["notice"] for n in outcome.notices) + f" for {key}",
            {"notices": [n["notice"] for n in outcome.notices], "key": key},
        ),
    ]
