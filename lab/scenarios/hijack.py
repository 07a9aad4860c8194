"""`hijack`: an attacker AS announces a more-specific of our prefix to the upstream our
guard peers with; the guard raises a sub-prefix hijack (ARTEMIS S|0) naming the attacker,
and closes it when the attacker withdraws.

    ours AS64500 ── upstream AS64501 ── attacker AS64511
    203.0.113.0/24        │               203.0.113.128/25 (held until the attack)
                       guard AS65010 (overcast guard watch)

Every AS is a real bird2 in its own namespace on one peering LAN; the upstream accepts
what its customers send (no prefix filter, as too many still do) and sends its whole table
to the guard. A more-specific wins on longest match everywhere it spreads, which is why it
is the hijack that works (Pakistan Telecom / YouTube, 2008).

For anyone who wants the alert in a report (the demo): `hijack_story(state_dir, progress)`
runs it inside an existing lab, `run_hijack(progress)` on a lab of its own that it removes
again; both return the checks."""

from __future__ import annotations

from pathlib import Path

from lab import scenarios
from lab.bgp import bird
from lab.bgp.plan import AsSpec, BgpLabPlan, Topology
from lab.scenarios import Check, Progress, SitelessScenario
from lab.scenarios import bgp as common

OUR_PREFIX = "203.0.113.0/24"
HIJACKED = "203.0.113.128/25"
OURS, UPSTREAM, ATTACKER = 64500, 64501, 64511
TOPOLOGY = Topology(
    (
        AsSpec("ours", OURS, originates=(OUR_PREFIX,), providers=("upstream",)),
        AsSpec("upstream", UPSTREAM, guard=True),
        AsSpec("attacker", ATTACKER, held=(HIJACKED,), providers=("upstream",)),
    ),
    ours="ours",
)


def _quiet(_: str) -> None:
    pass


def _alert(outcome: common.Outcome) -> Check:
    event, seconds = outcome.event, outcome.seconds_to_alert
    ok = (
        event.get("prefix") == HIJACKED
        and event.get("offending_as") == ATTACKER
        and event.get("artemis") == "S|0|-|-"
    )
    return Check(
        "hijack alert",
        ok,
        f"open {seconds:.2f} s after the announcement: {event.get('rationale')}",
        {
            "seconds_to_alert": round(seconds, 3),
            "type": event.get("type"),
            "artemis": event.get("artemis"),
            "prefix": event.get("prefix"),
            "offending_as": event.get("offending_as"),
            "example_path": event.get("example_path"),
        },
    )


def incident(plan: BgpLabPlan) -> common.Incident:
    """What the scenario stages on a built hijack lab, and how it is undone (the bench,
    bench/lab_bgp_alerts.py, repeats it)."""
    attacker = plan.router("attacker")
    return common.Incident(
        what=f"{attacker.label} announces {HIJACKED}, a more-specific of {OUR_PREFIX}",
        undo=f"{attacker.label} withdraws {HIJACKED}",
        event_type="subprefix-origin",
        start=lambda: bird.announce_held(attacker, True),
        end=lambda: bird.announce_held(attacker, False),
    )


def checks(plan: BgpLabPlan, progress: Progress) -> list[Check]:
    """The scenario's checks on a built hijack lab."""
    out = common.baseline(plan)
    staged = incident(plan)
    outcome = common.run(plan, staged, progress)
    return out + common.checks(staged, outcome, _alert, "hijack alert")


def hijack_story(state_dir: Path, progress: Progress) -> list[Check]:
    """The whole scenario inside the lab at `state_dir`, a lab of its own or one with sites
    (the demo's): its routers and guard are recorded in that lab's registry, so the lab's
    teardown removes them."""
    return checks(common.build(TOPOLOGY, state_dir, progress), progress)


def run_hijack(progress: Progress = _quiet, lab_id: str | None = None) -> list[Check]:
    """The scenario on a lab of its own (`lab_id`, else a new one), removed whatever
    happens; a failure to build comes back as a failed check, not an exception."""
    result = scenarios.run(SCENARIO, lab_id, progress)
    if result.error:
        return [*result.checks, Check("hijack scenario", False, result.error)]
    return list(result.checks)


SCENARIO = SitelessScenario(
    name="hijack",
    promise=(
        "an attacker's more-specific of our prefix raises a hijack alert naming it, closed "
        "when it is withdrawn"
    ),
    act=hijack_story,
)
