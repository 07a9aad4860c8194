"""`leak`: a customer AS re-announces a route it learned from one provider to its other
provider (a valley-free violation, RFC 7908 section 3.1 type 1, the mistake behind the
2019 Verizon / DQE outage); the guard flags the route leak naming the leaker, and closes
it when the customer fixes its export filter.

    ours AS64500 ── provider-a AS64501 ── customer AS64510 ── provider-b AS64502
    203.0.113.0/24          │            (198.51.100.0/24)           │
                            └──────── guard AS65010 ─────────────────┘

Every AS is a real bird2 in its own namespace. The customer's export filter to provider-b
should send only its own 198.51.100.0/24; the scenario rewrites it to send everything and
reloads bird (`birdc configure`), as a careless change would, then puts it back. The guard
knows who is whose customer from a CAIDA-format AS relationship file written from the
topology, and sees the leaked path 64502 64510 64501 64500 through provider-b."""

from __future__ import annotations

from pathlib import Path

from lab.bgp import bird
from lab.bgp.plan import AsSpec, BgpLabPlan, Topology
from lab.scenarios import Check, Progress, SitelessScenario
from lab.scenarios import bgp as common

OUR_PREFIX = "203.0.113.0/24"
OURS, PROVIDER_A, PROVIDER_B, CUSTOMER = 64500, 64501, 64502, 64510
TOPOLOGY = Topology(
    (
        AsSpec("ours", OURS, originates=(OUR_PREFIX,), providers=("provider-a",)),
        AsSpec("provider-a", PROVIDER_A, guard=True),
        AsSpec("provider-b", PROVIDER_B, guard=True),
        AsSpec(
            "customer",
            CUSTOMER,
            originates=("198.51.100.0/24",),
            providers=("provider-a", "provider-b"),
            leaks_to=("provider-b",),
        ),
    ),
    ours="ours",
)


def _alert(outcome: common.Outcome) -> Check:
    event, seconds = outcome.event, outcome.seconds_to_alert
    ok = (
        event.get("prefix") == OUR_PREFIX
        and event.get("offending_as") == CUSTOMER
        and f"AS{CUSTOMER} learned the route from its provider AS{PROVIDER_A}"
        in event.get("rationale", "")
    )
    return Check(
        "leak alert names the leaker",
        ok,
        f"open {seconds:.2f} s after the leak began: {event.get('rationale')}",
        {
            "seconds_to_alert": round(seconds, 3),
            "type": event.get("type"),
            "prefix": event.get("prefix"),
            "leaker_as": event.get("offending_as"),
            "example_path": event.get("example_path"),
        },
    )


def incident(plan: BgpLabPlan) -> common.Incident:
    """What the scenario stages on a built leak lab, and how it is undone (the bench,
    bench/lab_bgp_alerts.py, repeats it)."""
    customer = plan.router("customer")
    return common.Incident(
        what=f"{customer.label} exports everything to provider-b (birdc configure)",
        undo=f"{customer.label} puts its export filter back (birdc configure)",
        event_type="route-leak",
        start=lambda: bird.reconfigure(customer, leaking=True),
        end=lambda: bird.reconfigure(customer, leaking=False),
    )


def checks(plan: BgpLabPlan, progress: Progress) -> list[Check]:
    """The scenario's checks on a built leak lab."""
    out = common.baseline(plan)
    staged = incident(plan)
    outcome = common.run(plan, staged, progress)
    return out + common.checks(staged, outcome, _alert, "leak alert names the leaker")


def leak_story(state_dir: Path, progress: Progress) -> list[Check]:
    """The whole scenario inside the lab at `state_dir` (see hijack.hijack_story)."""
    return checks(common.build(TOPOLOGY, state_dir, progress), progress)


SCENARIO = SitelessScenario(
    name="leak",
    promise=(
        "a customer passing one provider's route to another raises a route-leak alert "
        "naming the leaker, closed when its filter is fixed"
    ),
    act=leak_story,
)
