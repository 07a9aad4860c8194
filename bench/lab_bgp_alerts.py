"""Time from a router's command to the guard's notice, over many incidents: the figures of
the `hijack` and `leak` lab scenarios with more than one sample.

    sudo .venv/bin/python bench/lab_bgp_alerts.py [--incidents 20]

Needs root and bird2. Builds each scenario's BGP lab once (real bird2 routers in
namespaces, `overcast guard watch` peering with them), waits for convergence, then repeats
the scenario's incident: the attacker announces and withdraws its more-specific (hijack),
the customer's export filter is opened and fixed with `birdc configure` (leak). Each open
and close is timed from the command to the notice's arrival in the guard's JSON-lines sink
(read every 20 ms, so figures below 20 ms are at the polling's resolution): BGP through
the routers, the guard's detection, its SQLite state and the sink's fsync.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import build, interrupt, names
from lab.bgp import build as bgp_build
from lab.plan import STATE_ROOT
from lab.scenarios import bgp as common
from lab.scenarios import hijack, leak


def _quiet(_: str) -> None:
    pass


def _figures(name: str, values: list[float]) -> str:
    ms = sorted(v * 1e3 for v in values)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return (
        f"  {name:<6} p50 {statistics.median(ms):6.1f} ms  p90 {p90:6.1f} ms  "
        f"max {ms[-1]:6.1f} ms  (n={len(ms)})"
    )


def bench(scenario: str, incidents: int) -> bool:
    module = {"hijack": hijack, "leak": leak}[scenario]
    offender = hijack.ATTACKER if scenario == "hijack" else leak.CUSTOMER
    state_dir = STATE_ROOT / names.new_lab_id()
    try:
        started = time.monotonic()
        plan = common.build(module.TOPOLOGY, state_dir, _quiet)
        built = time.monotonic() - started
        converged = bgp_build.wait_converged(plan)
        opens, closes, wrong = [], [], 0
        for _ in range(incidents):
            outcome = common.run(plan, module.incident(plan), _quiet)
            if outcome.opened is None or outcome.closed is None:
                print(f"{scenario}: an incident got no open or no close; stopping")
                return False
            wrong += outcome.event["offending_as"] != offender
            opens.append(outcome.opened.seconds)
            closes.append(outcome.closed.seconds)
    finally:
        with interrupt.sigint_ignored():
            down = time.monotonic()
            build.down(state_dir)
            teardown = time.monotonic() - down
    print(
        f"{scenario}: build {built:.1f} s, converged {converged:.1f} s later, "
        f"teardown {teardown:.1f} s; {wrong} alerts named the wrong AS"
    )
    print(_figures("open", opens))
    print(_figures("close", closes))
    return wrong == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=20, help="per scenario (default 20)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ok = all([bench("hijack", args.incidents), bench("leak", args.incidents)])
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
