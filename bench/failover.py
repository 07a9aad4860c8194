"""Failover and failback gaps between two sites on two providers, under a 1 ms probe stream.

Builds a lab of two sites (hq, branch), each on two underlay networks (isp-a preferred,
isp-b), runs one probe stream from hq's host to branch's and back (a UDP probe every
millisecond, lab.probe), then fails hq's access to isp-a N times, alternating the fault
kinds (link down, nftables blackhole, 100 % loss), healing it each time and waiting for
traffic to return after the hold-down. For each failover and failback it reports the gap
(from the last probe answered before to the first answered after) and the probes lost,
then the median and maximum. A failback's window is the moment each site moves back (as
polled) -0.3/+0.4 s; outages between healing and that (while the repaired path is held)
are reported apart, as outages no fault caused (BFD sessions timing out on a busy
machine). A failover's window starts 50 ms before the fault, for probes in flight when it
struck. Needs root. Figures vary with machine load (printed).

    .venv/bin/python bench/failover.py --failovers 20
    .venv/bin/python bench/failover.py --failovers 6 --bfd-interval 30 --hold-down 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.failover import path_groups
from bridge.watch import path_report
from lab import build, faults, flows, names, netns, switch
from lab.plan import STATE_ROOT, LabPlan
from lab.probe import Outage, ProbeStream
from overcast.config import loads

CONFIG = """
underlays:
  isp-a: {{description: preferred carrier}}
  isp-b: {{description: second carrier}}
sites:
  hq:     {{role: enterprise, underlay: {{isp-a: 192.0.2.1, isp-b: 198.51.100.1}}}}
  branch: {{role: enterprise, underlay: {{isp-a: 192.0.2.2, isp-b: 198.51.100.2}}}}
segments:
  finance: {{mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}}
bridge: {{failover: {{bfd_interval_ms: {bfd}, hold_down_s: {hold}}}}}
"""


class Sites:
    """hq's and branch's switches, one OVSDB connection each, kept open: polled often, so
    kept cheap (a new connection per poll loads ovsdb-server, and so the switch)."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.dbs = {s: switch.ovsdb(plan.site(s)) for s in ("hq", "branch")}

    def roles(self, site: str) -> dict[str, str]:
        (group,) = path_report(self.plan.site(site).dataplane, self.dbs[site])
        return {p["underlay"]: p["role"] for p in group["paths"]}

    def settled(self) -> bool:
        """Both ends carry traffic on isp-a with isp-b standing by."""
        want = {"isp-a": "active", "isp-b": "standby"}
        return all(self.roles(s) == want for s in self.dbs)

    def both_down(self) -> bool:
        return all(self.roles(s)["isp-a"] == "down" for s in self.dbs)

    def failed_back(self, timeout: float) -> dict[str, float]:
        """When each site was first seen sending on isp-a again (monotonic), polled."""
        back: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(back) < len(self.dbs) and time.monotonic() < deadline:
            for site in self.dbs:
                if site not in back and self.roles(site)["isp-a"] == "active":
                    back[site] = time.monotonic()
            time.sleep(0.05)
        return back

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


def bfd_changes(plan: LabPlan, offset: float) -> list[tuple[float, str]]:
    """Every BFD state change both switches logged, as (monotonic time, "site port
    from->to (diagnostic)"); `offset` is wall - monotonic."""
    return sorted(
        (c.at - offset, f"{site} {c.port} {c.old}->{c.new} ({c.diagnostic})")
        for site in ("hq", "branch")
        for c in switch.bfd_changes(plan.site(site))
    )


def during(changes: list[tuple[float, str]], outage: Outage | None) -> list[str]:
    """The BFD changes from 0.3 s before an outage to its end: what it coincided with."""
    if outage is None:
        return []
    return [
        f"{what} at {at - outage.last_before:+.2f}s"
        for at, what in changes
        if outage.last_before - 0.3 <= at <= outage.first_after
    ]


IN_FLIGHT = 0.05  # s: a probe sent this long before a fault may be lost to it


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.0f}, max {max(values):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--bfd-interval", type=int, default=50, help="BFD min_tx/min_rx, ms")
    parser.add_argument("--hold-down", type=float, default=5.0, help="failback hold-down, s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    text = CONFIG.format(bfd=args.bfd_interval, hold=args.hold_down)
    config = loads(text)
    lab_id = names.new_lab_id()
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    try:
        plan = build.up(config, lab_id, "bench failover", text)
        flows.wait_programmed(config, plan)
        flows.wait_paths_up(plan)
        assert path_groups(plan.site("hq").dataplane)
        hq, branch = plan.hosts_at("hq")[0], plan.hosts_at("branch")[0]
        # kind, broken, healed, first site back on isp-a, both settled
        marks: list[tuple[str, float, float, float, float]] = []
        sites = Sites(plan)
        with ProbeStream(hq.netns, branch.netns, branch.address.ip) as probes:
            for i in range(args.failovers):
                kind = faults.FAULTS[i % len(faults.FAULTS)]
                if not netns.wait_until(sites.settled, 60, interval=0.1):
                    raise SystemExit(f"failover {i + 1}: paths did not settle")
                time.sleep(0.3)
                broken = time.monotonic()
                faults.inject(plan, "hq", "isp-a", kind)
                netns.wait_until(sites.both_down, 10, interval=0.05)
                time.sleep(0.5)
                healed = time.monotonic()
                faults.clear(plan, "hq", "isp-a", kind)
                moved_back = sites.failed_back(args.hold_down + 30)
                netns.wait_until(sites.settled, args.hold_down + 30, interval=0.1)
                first_back = min(moved_back.values(), default=time.monotonic())
                marks.append((kind, broken, healed, first_back, time.monotonic()))
                print(f"  {i + 1}/{args.failovers} {kind}", file=sys.stderr)
            time.sleep(0.5)
        sites.close()
        changes = bfd_changes(plan, time.time() - time.monotonic())
        ends = [m[1] for m in marks[1:]] + [float("inf")]  # each window ends at the next fault
        for (fault, broken, healed, first_back, returned), end in zip(marks, ends, strict=True):
            out = probes.worst(since=broken - IN_FLIGHT, until=healed)
            ret = probes.worst(since=first_back - 0.3, until=min(returned + 0.4, end - IN_FLIGHT))
            held = probes.outages(since=healed, until=first_back - 0.3)
            runs.append(
                {
                    "fault": fault,
                    "failover_gap_ms": round(out.gap_ms, 1) if out else 0.0,
                    "failover_lost": out.lost if out else 0,
                    "failback_gap_ms": round(ret.gap_ms, 1) if ret else 0.0,
                    "failback_lost": ret.lost if ret else 0,
                    "failback_after_s": round(first_back - healed, 2),
                    # What a failback's loss coincided with: a BFD session going down that
                    # no fault of ours caused (a busy machine delays BFD packets).
                    "failback_bfd_changes": during(changes, ret),
                    "while_held_gaps_ms": [round(o.gap_ms, 1) for o in held],
                    "while_held_bfd_changes": [c for o in held for c in during(changes, o)],
                }
            )
    finally:
        build.down(STATE_ROOT / lab_id)

    load_after = os.getloadavg()
    over: list[float] = [r["failover_gap_ms"] for r in runs]
    back: list[float] = [r["failback_gap_ms"] for r in runs]
    lost: list[float] = [r["failover_lost"] for r in runs]
    back_lost: list[float] = [r["failback_lost"] for r in runs]
    stray: list[float] = [g for r in runs for g in r["while_held_gaps_ms"]]
    result = {
        "lab": lab_id,
        "bfd_interval_ms": args.bfd_interval,
        "hold_down_s": args.hold_down,
        "load_average": [round(load_before[0], 1), round(load_after[0], 1)],
        "runs": runs,
        "failover_gap_ms": {"median": statistics.median(over), "max": max(over)},
        "failback_gap_ms": {"median": statistics.median(back), "max": max(back)},
        "failover_lost": {"median": statistics.median(lost), "max": max(lost)},
        "failback_lost": {"median": statistics.median(back_lost), "max": max(back_lost)},
        "outages_while_held_ms": stray,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{len(runs)} failovers of hq's isp-a path, BFD {args.bfd_interval} ms, hold-down "
        f"{args.hold_down:g} s, 1 ms probes hq -> branch -> hq; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores)"
    )
    for i, r in enumerate(runs, 1):
        print(
            f"  {i:>2} {r['fault']:<9} failover gap {r['failover_gap_ms']:6.1f} ms "
            f"({r['failover_lost']:>3} lost)   failback gap {r['failback_gap_ms']:6.1f} ms "
            f"({r['failback_lost']:>3} lost) {r['failback_after_s']:5.1f} s after healing"
        )
        if r["failback_lost"]:
            print(f"     failback loss coincided with: {'; '.join(r['failback_bfd_changes'])}")
        if r["while_held_gaps_ms"]:
            print(
                f"     outages while held (ms): {r['while_held_gaps_ms']}, coinciding with: "
                + "; ".join(r["while_held_bfd_changes"])
            )
    print(f"failover gap ms: {summary(over)};  probes lost: {summary(lost)}")
    print(f"failback gap ms: {summary(back)};  probes lost: {summary(back_lost)}")
    print(
        f"outages no fault caused (while the repaired path was held): {len(stray)}"
        + (f", longest {max(stray):.0f} ms" if stray else "")
    )
    for each in faults.FAULTS:
        mine = [r["failover_gap_ms"] for r in runs if r["fault"] == each]
        print(f"  {each:<9} failover gap ms: {summary(mine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
