"""Golden: every example path of the draft's examples document (aspa_examples.json), each
verified with the procedure the document applies, against the outcome it gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.aspa import Aspa, AspaSet, Outcome, Procedure, verify

EXAMPLES = json.loads((Path(__file__).parent / "aspa_examples.json").read_text())
ASNS: dict[str, int] = {**EXAMPLES["asns"], "AS0": 0}


def topology(name: str) -> AspaSet:
    return AspaSet(
        Aspa(ASNS[customer], frozenset(ASNS[p] for p in providers))
        for customer, providers in EXAMPLES["topologies"][name].items()
    )


@pytest.mark.parametrize(
    "case",
    EXAMPLES["cases"],
    ids=[f"table{c['table'][0]}-case{c['case']}" for c in EXAMPLES["cases"]],
)
def test_draft_example(case: dict[str, Any]) -> None:
    path = tuple(ASNS[letter] for letter in case["path"].split())
    verdict = verify(path, topology(case["topology"]), Procedure(case["procedure"]))
    assert verdict.outcome is Outcome(case["expected"]), verdict.reason
    assert bool(verdict.reason) == (verdict.outcome is Outcome.INVALID)


def test_examples_cover_every_outcome_of_both_procedures() -> None:
    seen = {(c["procedure"], c["expected"]) for c in EXAMPLES["cases"]}
    assert seen == {
        (p, o) for p in ("upstream", "downstream") for o in ("valid", "invalid", "unknown")
    }
