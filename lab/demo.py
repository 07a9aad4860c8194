"""The demo: the whole story on the built-in config, step by step, into one report.

Two enterprise sites (hq, branch) and two cloud sites at two vendors (cloud-a, cloud-b)
share one stretched Ethernet segment over two carriers (isp-a, isp-b). The story builds the
lab, carries traffic between every pair of sites, fails a carrier under a 1 ms probe stream
and measures the gap, raises a BGP hijack alert, and signs a user in through the SSO
gateway, then removes the lab. Each step returns checks with their figures
(lab.scenarios.Check). A step whose part is not built yet is reported as not run, never
faked. Everything said along the way is kept with its time for the report's timeline
(lab.demo_report)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from lab import build, demo_steps, flows, interrupt, names, netns, pathlog
from lab.plan import STATE_ROOT, HostPlan, LabPlan
from lab.registry import Entry, Registry
from lab.scenarios import Check, Progress
from overcast.config import OvercastConfig, loads

BUILT_IN = "demo.yaml"
Status = Literal["passed", "failed", "not run"]


def _quiet(_: str) -> None:
    pass


def built_in() -> tuple[OvercastConfig, str]:
    """The built-in demo config (shipped as package data) and its text."""
    text = resources.files("lab").joinpath(BUILT_IN).read_text(encoding="utf-8")
    return loads(text, source=f"built-in {BUILT_IN}"), text


# -- what a run keeps --------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at_s: float  # seconds since the story began
    step: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 2), "step": self.step, "text": self.text}


@dataclass(frozen=True)
class StepResult:
    name: str
    title: str
    status: Status
    started_s: float
    ended_s: float
    checks: tuple[Check, ...] = ()
    note: str = ""  # why it failed before its checks, or why it did not run

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "started_s": round(self.started_s, 2),
            "seconds": round(self.ended_s - self.started_s, 2),
            "note": self.note,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class DemoRun:
    lab_id: str
    config: OvercastConfig
    config_text: str
    started_at: datetime
    seconds: float
    steps: tuple[StepResult, ...]
    events: tuple[Event, ...]
    hosts: tuple[HostPlan, ...]
    paths_end: pathlog.Snapshot | None  # each path's role when the steps were done
    paths_detour: pathlog.Snapshot | None  # most traffic off its preferred carrier
    load: tuple[float, float, float]  # the machine's load average when it ended
    kept: bool

    @property
    def ok(self) -> bool:
        """Every step that ran passed (steps not run are named in the report)."""
        return all(s.status != "failed" for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "ok": self.ok,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 1),
            "load_average": self.load,
            "kept": self.kept,
            "steps": [s.as_dict() for s in self.steps],
            "not_run": [s.name for s in self.steps if s.status == "not run"],
            "hosts": [
                {"host": h.label, "address": str(h.address), "mtu": h.mtu} for h in self.hosts
            ],
            "paths_end": self.paths_end.as_dict() if self.paths_end else None,
            "paths_detour": self.paths_detour.as_dict() if self.paths_detour else None,
            "events": [e.as_dict() for e in self.events],
        }


# -- telling it --------------------------------------------------------------------------


@dataclass
class Story:
    """Runs steps, tells what happens as it happens (`echo`) and keeps it, timed."""

    echo: Progress = _quiet
    t0: float = field(default_factory=time.monotonic)
    step: str = ""
    events: list[Event] = field(default_factory=list)
    results: list[StepResult] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, line: str) -> None:
        at = self.now()
        self.events.append(Event(at, self.step, line))
        self.echo(f"[{at:6.1f}s] {line}")

    def run(self, name: str, title: str, act: Callable[[], list[Check]]) -> StepResult:
        self.step = name
        self(f"step {name}: {title}")
        started = self.now()
        try:
            checks, note = tuple(act()), ""
        except Exception as exc:
            checks, note = (), str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ok = bool(checks) and not note and all(c.ok for c in checks)
        for c in checks:
            self(f"{'pass' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
        if note:
            self(f"FAIL  {name}: {note}")
        return self._keep(
            StepResult(name, title, "passed" if ok else "failed", started, self.now(), checks, note)
        )

    def not_run(self, name: str, title: str, why: str) -> StepResult:
        self.step = name
        self(f"step {name}: not run: {why}")
        at = self.now()
        return self._keep(StepResult(name, title, "not run", at, at, note=why))

    def _keep(self, result: StepResult) -> StepResult:
        self.results.append(result)
        return result


def run(
    config: OvercastConfig,
    config_text: str,
    lab_id: str,
    *,
    seconds: int = 2,
    keep: bool = False,
    progress: Progress = _quiet,
) -> DemoRun:
    """Build the lab, run every step of the story on it, and (unless `keep`) remove it,
    also when a step fails or on Ctrl-C (then nothing is reported: the interrupt goes on)."""
    story = Story(progress)
    started_at = datetime.now(UTC)
    plan: list[LabPlan] = []
    end = detour = None
    try:
        built = story.run(
            "build",
            "sites, switches programmed by our controller, tunnels with BFD on every path",
            lambda: _build(config, config_text, lab_id, story, plan),
        )
        if built.status == "passed":
            with pathlog.PathLog(plan[0], story.t0, story) as paths:
                for step in demo_steps.steps(seconds):
                    if step.act is None:
                        story.not_run(step.name, step.title, step.missing)
                    else:
                        story.run(step.name, step.title, _bound(step.act, config, plan[0], story))
                # The picture's end state: give a path back from a failure its hold-down.
                story.step = "end"
                if not paths.settle(config.bridge.failover.hold_down_s + 10):
                    story("the end state: not every peer is back on its preferred underlay")
                end, detour = paths.now(), paths.detour()
        else:
            for step in demo_steps.steps(seconds):
                story.not_run(step.name, step.title, "the lab did not build")
    finally:
        if not keep:
            with interrupt.sigint_ignored():
                story.run(
                    "teardown",
                    "remove the lab and everything it made",
                    lambda: _down(lab_id, story),
                )
    return DemoRun(
        lab_id=lab_id,
        config=config,
        config_text=config_text,
        started_at=started_at,
        seconds=story.now(),
        steps=tuple(story.results),
        events=tuple(story.events),
        hosts=plan[0].hosts if plan else (),
        paths_end=end,
        paths_detour=detour,
        load=os.getloadavg(),
        kept=keep,
    )


def _bound(
    act: demo_steps.Act, config: OvercastConfig, plan: LabPlan, story: Story
) -> Callable[[], list[Check]]:
    def step() -> list[Check]:
        before = set(Registry(plan.state_dir).entries())
        try:
            return act(config, plan, story)
        finally:
            _forget_removed(plan.state_dir, before)

    return step


def _forget_removed(state_dir: Path, before: set[Entry]) -> None:
    """Namespaces a step made and removed again itself (the sso step's, say) are not part
    of the lab it leaves: forgotten, or `lab status` would call them missing."""
    registry = Registry(state_dir)
    for entry in registry.entries():
        if entry.kind == "netns" and entry not in before and not netns.exists(entry.name):
            registry.forget(entry)


def _build(
    config: OvercastConfig, text: str, lab_id: str, story: Story, out: list[LabPlan]
) -> list[Check]:
    t = time.monotonic()
    plan = build.up(config, lab_id, f"built-in {BUILT_IN}", text, story)
    out.append(plan)
    built = time.monotonic() - t
    story(f"lab {lab_id}: waiting for the controller to program every switch")
    checks = [
        Check(
            f"switch {s.site} programmed",
            s.programmed,
            f"{s.flows}/{s.planned} planned flows from our controller",
            {"flows": s.flows, "planned": s.planned},
        )
        for s in flows.wait_programmed(config, plan)
    ]
    paths = sum(1 for site in plan.sites for _ in site.dataplane.tunnels())
    if config.underlays:
        story(f"lab {lab_id}: waiting for every path's BFD session")
        flows.wait_paths_up(plan)
        checks.append(
            Check("BFD up on every path", True, f"{paths} tunnel ports, BFD up", {"tunnels": paths})
        )
    mtus = sorted({h.mtu for h in plan.hosts})
    checks.append(
        Check(
            "lab built",
            True,
            f"{len(plan.sites)} sites, {len(plan.hosts)} hosts at MTU {', '.join(map(str, mtus))} "
            f"(computed by the bridge plan), built in {built:.1f} s",
            {
                "sites": len(plan.sites),
                "hosts": len(plan.hosts),
                "host_mtu": mtus[0],
                "build_s": round(built, 1),
            },
        )
    )
    return checks


def _down(lab_id: str, story: Story) -> list[Check]:
    t = time.monotonic()
    build.down(STATE_ROOT / lab_id, story)
    took = time.monotonic() - t
    left = names.lab_netns(lab_id, netns.all_names())
    left += [str(STATE_ROOT / lab_id)] if (STATE_ROOT / lab_id).exists() else []
    return [
        Check(
            "lab removed",
            not left,
            f"processes, namespaces and files gone in {took:.1f} s"
            if not left
            else f"still there: {', '.join(left)}",
            {"teardown_s": round(took, 1)},
        )
    ]
