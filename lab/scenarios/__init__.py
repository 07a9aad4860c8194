"""Named scenarios, each proving one promise on a lab of its own: build what it needs, act,
assert, report pass/fail with its figures, and tear the lab down to nothing, even when a
check fails or the run is interrupted.

A scenario is registered here only once its part is built, so `overcast lab scenario
--list` never offers one that cannot really run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lab import build, flows, interrupt, names
from lab.plan import STATE_ROOT, LabPlan
from lab.registry import Registry
from overcast.config import OvercastConfig, loads

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Check:
    """One assertion of a scenario and the figures behind it."""

    name: str
    ok: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "figures": self.figures}


@dataclass(frozen=True)
class Result:
    scenario: str
    lab_id: str
    checks: tuple[Check, ...]
    error: str | None = None  # the build or an act failed before every check could run

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "lab_id": self.lab_id,
            "ok": self.ok,
            "error": self.error,
            "checks": [c.as_dict() for c in self.checks],
        }

    def summary(self) -> str:
        lines = [f"scenario {self.scenario} (lab {self.lab_id}):"]
        lines += [f"  {'pass' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        if self.error:
            lines.append(f"  error: {self.error}")
        passed = sum(c.ok for c in self.checks)
        lines.append(
            f"result: {'PASS' if self.ok else 'FAIL'} ({passed}/{len(self.checks)} checks)"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Scenario:
    name: str
    promise: str  # one line: what passing proves
    config_file: str  # the lab it builds, shipped next to this module
    act: Callable[[OvercastConfig, LabPlan, Progress], list[Check]]

    def config(self) -> tuple[OvercastConfig, str]:
        text = resources.files(__name__).joinpath(self.config_file).read_text(encoding="utf-8")
        return loads(text, source=f"scenario {self.name}"), text


@dataclass(frozen=True)
class SitelessScenario:
    """A scenario that needs no bridge sites (the gateway's sign-in, say). Its act gets the
    lab's state dir and records in that lab's registry every namespace it makes, so the
    same teardown removes them (processes inside go with their namespace)."""

    name: str
    promise: str
    act: Callable[[Path, Progress], list[Check]]


def registry() -> dict[str, Scenario | SitelessScenario]:
    """Every scenario that is built, by name."""
    from lab.scenarios import failover, hijack, leak, rotate, sso, stretch

    built = (
        stretch.SCENARIO,
        rotate.SCENARIO,
        sso.SCENARIO,
        hijack.SCENARIO,
        leak.SCENARIO,
        failover.SCENARIO,
    )
    return {s.name: s for s in built}


def run(
    scenario: Scenario | SitelessScenario, lab_id: str | None = None, progress: Progress = _quiet
) -> Result:
    """Build the scenario's lab, run its checks, and remove the lab whatever happens (the
    `finally` also runs on KeyboardInterrupt; `overcast lab down --all` covers a kill -9)."""
    lab_id = lab_id or names.new_lab_id()
    state_dir = STATE_ROOT / lab_id
    checks: list[Check] = []
    error = None
    try:
        if isinstance(scenario, SitelessScenario):
            progress(f"scenario {scenario.name}: lab {lab_id} (no sites)")
            Registry(state_dir).open()
            checks = scenario.act(state_dir, progress)
        else:
            config, text = scenario.config()
            progress(f"scenario {scenario.name}: building lab {lab_id}")
            plan = build.up(config, lab_id, f"scenario {scenario.name}", text, progress)
            progress(f"lab {lab_id}: waiting for the controller to program every switch")
            flows.wait_programmed(config, plan)
            checks = scenario.act(config, plan, progress)
    except Exception as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        # Also on Ctrl-C; a second one must not cut the removal short.
        progress(f"scenario {scenario.name}: removing lab {lab_id}")
        with interrupt.sigint_ignored():
            build.down(state_dir, progress)
    return Result(scenario.name, lab_id, tuple(checks), error)
