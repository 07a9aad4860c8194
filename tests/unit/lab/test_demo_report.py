"""The demo's report, rendered from a run made up here: self-contained, every step and
figure in it, the picture's tunnels drawn in their roles, steps not run said to be so.
(tests/integration/lab/test_slice.py renders a real run's report in Chromium.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

from bridge.failover import all_paths, path_groups
from bridge.keys import generate_private_key, public_key_of
from lab import demo, demo_report
from lab.demo import DemoRun, Event, StepResult
from lab.pathlog import PathRole, Snapshot, moves
from lab.plan import LabPlan, plan_lab
from lab.scenarios import Check


def snapshot(plan: LabPlan, at_s: float, preferred_up: bool) -> Snapshot:
    """Every path of the demo lab: on isp-a with isp-b standing by, or isp-a down."""
    roles = []
    for site in plan.sites:
        for path in all_paths(path_groups(site.dataplane)):
            first = path.underlay == "isp-a"
            role = (
                ("active" if first else "standby")
                if preferred_up
                else ("down" if first else "active")
            )
            roles.append(PathRole(site.name, path.peer, path.segment, path.underlay, role, "up"))
    return Snapshot(at_s, tuple(roles))


def sample_run(*, hijack_ran: bool = False) -> DemoRun:
    config, text = demo.built_in()
    keys = {site: public_key_of(generate_private_key()) for site in config.sites}
    plan = plan_lab(config, "oc1234", keys)
    steps = [
        StepResult(
            "build",
            "sites",
            "passed",
            0.0,
            40.0,
            (Check("lab built", True, "4 sites", {"sites": 4}),),
        ),
        StepResult(
            "traffic",
            "ping and TCP",
            "passed",
            40.0,
            60.0,
            (
                Check("ping hq -> branch", True, "5/5 replies", {"sent": 5, "received": 5}),
                Check("TCP hq -> branch", True, "51 Mbit/s", {"bits_per_second": 51.2e6}),
                Check("TCP hq -> cloud-b", True, "43 Mbit/s", {"bits_per_second": 43.0e6}),
            ),
        ),
        StepResult(
            "failover",
            "a carrier fails",
            "failed",
            60.0,
            75.0,
            (
                Check(
                    "failover isp-a -> isp-b", True, "gap 151 ms", {"gap_ms": 151.0, "lost": 145}
                ),
                Check("failback", False, "the stream did not recover", {"gap_ms": 0.0}),
            ),
        ),
        StepResult(
            "hijack", "an attacker AS <announces>", "not run", 75.0, 75.0, note="not built yet"
        )
        if not hijack_ran
        else StepResult(
            "hijack",
            "hijack",
            "passed",
            75.0,
            80.0,
            (
                Check("no alert for legitimate routes", True, "0 notices", {"notices": 0}),
                Check(
                    "hijack alert",
                    True,
                    "open 0.10 s after the announcement",
                    {"prefix": "203.0.113.128/25", "offending_as": 64511},
                ),
            ),
        ),
        StepResult("sso", "a user signs in", "failed", 75.0, 76.0, note="the IdP did not start"),
    ]
    events = [
        Event(1.0, "build", "lab oc1234: site hq"),
        Event(62.0, "failover", "failover: isp-a fails"),
        Event(62.4, "failover", "paths: isp-a -> isp-b: hq->branch, branch->hq"),
        Event(67.0, "failover", "paths: isp-b -> isp-a: hq->branch, branch->hq"),
    ]
    return DemoRun(
        lab_id="oc1234",
        config=config,
        config_text=text + "# <script>alert(1)</script>\n",
        started_at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        seconds=90.0,
        steps=tuple(steps),
        events=tuple(events),
        hosts=plan.hosts,
        paths_end=snapshot(plan, 89.0, preferred_up=True),
        paths_detour=snapshot(plan, 62.5, preferred_up=False),
        load=(1.0, 2.0, 3.0),
        kept=False,
    )


class Elements(HTMLParser):
    """Every start tag with its attributes, and whether anything points outside the file."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def having(self, tag: str, **want: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in want.items())
        ]


def parse(html: str) -> Elements:
    e = Elements()
    e.feed(html)
    return e


def test_the_report_is_self_contained() -> None:
    html = demo_report.render(sample_run())
    doc = parse(html)
    assert not [t for t, _ in doc.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in doc.tags for k, v in a.items() if k in ("src", "href") and v]
    assert "url(" not in html and "@import" not in html
    # The config's text is shown, not run.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html


def test_every_step_is_in_the_story_with_its_status() -> None:
    run = sample_run()
    doc = parse(demo_report.render(run))
    steps = {a["data-step"]: a["data-status"] for a in doc.having("li", **{"class": "step"})}
    assert steps == {
        "build": "passed",
        "traffic": "passed",
        "failover": "failed",
        "hijack": "not run",
        "sso": "failed",
    }
    assert not run.ok
    verdict = doc.having("span", id="verdict")[0]
    assert verdict["data-ok"] == "false"
    bars = {a["data-step"]: a["data-status"] for a in doc.having("g", **{"class": "bar"})}
    assert bars == steps


def test_headlines_carry_the_telling_figure() -> None:
    steps = {s.name: demo_report.headline(s) for s in sample_run().steps}
    assert "TCP 43 to 51 Mbit/s" in steps["traffic"]
    assert steps["failover"].startswith("1/2 checks passed; failback: the stream did not recover")
    assert steps["hijack"] == "not run: not built yet"
    assert steps["sso"].startswith("failed: the IdP did not start")


def test_the_picture_has_every_site_provider_segment_and_tunnel_in_its_role() -> None:
    doc = parse(demo_report.render(sample_run()))
    assert doc.having("svg", id="topology") and doc.having("svg", id="topology-detour")
    sites = {a["data-site"] for a in doc.having("g", **{"class": "site"})}
    assert sites == {"hq", "branch", "cloud-a", "cloud-b"}
    providers = {a["data-provider"] for a in doc.having("g", **{"class": "provider"})}
    assert providers == {"vendor-a", "vendor-b"}
    assert {a["data-segment"] for a in doc.having("g", **{"class": "segment"})} == {"finance"}
    tunnels = doc.having("g", **{"class": "tunnel"})
    # Six pairs of sites, two carriers, two pictures (the end, and during the failure).
    assert len(tunnels) == 6 * 2 * 2
    end, detour = tunnels[:12], tunnels[12:]
    assert {(t["data-underlay"], t["data-role"]) for t in end} == {
        ("isp-a", "active"),
        ("isp-b", "standby"),
    }
    assert {(t["data-underlay"], t["data-role"]) for t in detour} == {
        ("isp-a", "down"),
        ("isp-b", "active"),
    }


def test_the_guard_and_the_gateway_show_what_their_steps_found() -> None:
    doc = parse(demo_report.render(sample_run()))
    services = {a["data-step"]: a["data-status"] for a in doc.having("g", **{"class": "service"})}
    assert services == {"hijack": "not run", "sso": "failed"}
    assert not doc.having("text", **{"class": "line alert"})
    doc = parse(demo_report.render(sample_run(hijack_ran=True)))
    # The alert raised, not the check that there was none before it.
    assert len(doc.having("text", **{"class": "line alert"})) == 1
    assert "\u26a0 hijack alert: 203.0.113.128/25 by AS64511" in demo_report.render(
        sample_run(hijack_ran=True)
    )


def test_moves_between_carriers_are_grouped_and_on_the_timeline() -> None:
    run = sample_run()
    assert run.paths_detour is not None and run.paths_end is not None
    (move,) = [m for m in moves(run.paths_end, run.paths_detour) if m.startswith("isp-a")]
    assert move.startswith("isp-a -> isp-b: hq->branch, hq->cloud-a")
    html = demo_report.render(run)
    assert len(re.findall(r'<g class="move">', html)) == 2
    assert "every move of traffic between carriers" in html


def test_a_run_where_every_step_passed_is_ok() -> None:
    run = sample_run(hijack_ran=True)
    good = DemoRun(**{**run.__dict__, "steps": tuple(s for s in run.steps if s.status == "passed")})
    assert good.ok
    assert 'data-ok="true"' in demo_report.render(good)
