"""Golden cases: one JSON file per case under golden/, holding the guard config, the updates
(and peer downs) fed in order, optional VRPs, AS relationships and ASPAs (as rpki-client
writes them), and the exact event transitions expected.

Regenerate after an intended change with OVERCAST_REGEN_GOLDEN=1, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.aspa import load_aspas
from bgp_guard.asrel import load_asrel
from bgp_guard.engine import Guard
from bgp_guard.rpki import load_vrps

from .helpers import guard_config, item

CASES = sorted((Path(__file__).parent / "golden").glob("*.json"))


def run_case(case: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    vrps = asrel = aspas = None
    if "vrps" in case:
        vrp_file = tmp_path / "vrps.json"
        vrp_file.write_text(json.dumps({"roas": case["vrps"]}))
        vrps = load_vrps(vrp_file)
    if "asrel" in case:
        rel_file = tmp_path / "as-rel.txt"
        rel_file.write_text("# serial-1\n" + "\n".join(case["asrel"]) + "\n")
        asrel = load_asrel(rel_file)
    if "aspas" in case:
        aspa_file = tmp_path / "rpki.json"
        aspa_file.write_text(json.dumps({"aspas": case["aspas"]}))
        aspas = load_aspas(aspa_file)
    guard = Guard(guard_config(case["config"]), vrps=vrps, asrel=asrel, aspas=aspas)
    events: list[dict[str, Any]] = []
    for spec in case["updates"]:
        events += guard.process(item(spec))
    if "finish_at" in case:
        events += guard.finish(case["finish_at"])
    return events


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path, tmp_path: Path) -> None:
    case = json.loads(path.read_text())
    events = run_case(case, tmp_path)
    if os.environ.get("OVERCAST_REGEN_GOLDEN"):
        case["expected"] = events
        path.write_text(json.dumps(case, indent=2) + "\n")
    assert events == case["expected"], case.get("description")


def test_every_detector_has_a_case() -> None:
    kinds = {e["type"] for p in CASES for e in json.loads(p.read_text())["expected"]}
    assert kinds >= {
        "exact-origin", "exact-upstream", "subprefix-origin", "subprefix-upstream", "squat",
        "too-specific", "as-set-origin", "path-match", "path-miss", "path-length",
        "rpki-invalid", "rpki-not-found", "route-leak", "visibility-loss", "new-upstream",
        "new-downstream", "aspa-invalid",
    }  # fmt: skip
