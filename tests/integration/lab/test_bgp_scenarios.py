"""The BGP scenarios on real bird2 routers and our guard (`overcast guard watch`), run as a
user runs them: `overcast lab scenario hijack|leak --json`. Ctrl-C in the middle of a
hijack run removes every namespace, bird and guard it had started, and the hijack then runs
whole on the same lab id (nothing left in the way)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import require_binaries
from tests.integration.lab.conftest import interrupted_once, leftovers, overcast

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

DAEMONS = ("bird", "birdc")


def _run(name: str, lab_id: str) -> dict[str, dict[str, Any]]:
    run = overcast("lab", "scenario", name, "--id", lab_id, "--json", timeout=120)
    assert run.returncode == 0, f"{run.stdout}{run.stderr[-3000:]}"
    result = json.loads(run.stdout)
    assert result["ok"] and result["error"] is None and result["lab_id"] == lab_id
    assert leftovers(lab_id) == []
    return {c["name"]: c for c in result["checks"]}


def _timed(checks: dict[str, dict[str, Any]], alert: str) -> tuple[float, float]:
    opened = checks[alert]["figures"]["seconds_to_alert"]
    closed = checks["alert closed"]["figures"]["seconds_to_clear"]
    assert 0 < opened < 20 and 0 < closed < 20
    return opened, closed


def test_ctrl_c_leaves_nothing_and_the_hijack_then_runs_on_the_same_lab_id(lab_id: str) -> None:
    require_binaries(*DAEMONS)
    # Interrupt it once the guard runs and the first bird is recorded, others to come.
    code, err = interrupted_once(
        ["lab", "scenario", "hijack", "--id", lab_id], lab_id, "bird", timeout=60
    )
    assert code == 130, err[-6000:]
    assert f"removing lab {lab_id}" in err
    assert leftovers(lab_id) == []

    checks = _run("hijack", lab_id)
    assert list(checks) == [
        "BGP converged",
        "no alert for legitimate routes",
        "hijack alert",
        "alert in the guard's state",
        "alert closed",
        "one open and one close",
    ]
    alert = checks["hijack alert"]["figures"]
    assert (alert["prefix"], alert["offending_as"], alert["artemis"]) == (
        "203.0.113.128/25",
        64511,
        "S|0|-|-",
    )
    assert alert["example_path"] == [64501, 64511]
    assert checks["alert closed"]["figures"]["label"] == "withdrawn"
    opened, closed = _timed(checks, "hijack alert")
    print(f"\nhijack: alert {opened:.3f} s, clear {closed:.3f} s")


def test_leak_is_alerted_naming_the_leaker_and_cleared(lab_id: str) -> None:
    require_binaries(*DAEMONS)
    checks = _run("leak", lab_id)
    alert = checks["leak alert names the leaker"]
    assert alert["figures"]["leaker_as"] == 64510
    assert alert["figures"]["example_path"] == [64502, 64510, 64501, 64500]
    assert "AS64510 learned the route from its provider AS64501" in alert["detail"]
    assert checks["no alert for legitimate routes"]["figures"]["notices"] == 0
    opened, closed = _timed(checks, "leak alert names the leaker")
    print(f"\nleak: alert {opened:.3f} s, clear {closed:.3f} s")
