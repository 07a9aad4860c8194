"""ASPA path verification on versus off: replay throughput of `Guard.process` on the shared
RIS/RouteViews files.

    .venv/bin/python bench/bgp_aspa.py [FILE...]   (default: the shared RIS/RouteViews files)

The files are parsed once, outside the timing; then each mode replays the same updates
through a fresh `Guard` built from the end-to-end test config (monitored prefixes, VRPs,
CAIDA relationships, own-ASN checks), and CPU time of one process is measured (best of 2):

- off:       no ASPA file;
- monitored: ASPA on for the monitored prefixes (the default scope);
- all:       ASPA on for every announcement (scope: all), the worst case;

then, with every route of the replay held (scope: all), an ASPA reload (`replace_aspas`)
that changes one customer AS (the one on most paths), and one that changes them all.

No ASPA data from 2007-2016 exists, so the ASPAs are made from the files themselves (seed
1): every AS seen in a path publishes, with probability 1/2, the ASes seen right before it
(towards the collector) as its providers, each left out with probability 1/5, so that the
paths verify as a mix of Valid, Unknown and Invalid, as they would in a partial deployment.
Verification cost depends on path length, not on the number of ASPAs.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.aspa import Aspa, AspaSet, Outcome, Procedure, verify
from bgp_guard.cli import build_guard, load_guard_config
from bgp_guard.config import AspaSettings, GuardConfig
from bgp_guard.engine import Guard
from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.update import FeedItem, Update

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "unit" / "bgp_guard" / "replay_ris" / "overcast.yaml"
DATA = Path(os.environ.get("OVERCAST_SHARED_DATA", "/work/shared/data")) / "bgp"
FILES = [
    "ris-updates.20160811.1600.gz",
    "ris-updates.20070211.0141.gz",
    "ris-updates.et-header.2015.gz",
    "ris-rrc06.updates.1427846400.gz",
    "routeviews-jinx.updates.1427846400.bz2",
]


NONE = frozenset({0})  # AS0: no providers


def synthetic_aspas(items: list[FeedItem], seed: int = 1) -> AspaSet:
    heard: dict[int, set[int]] = {}
    for item in items:
        if type(item) is Update and item.announce:
            path = [e for e in item.as_path if type(e) is int]
            for left, right in itertools.pairwise(path):
                if left != right:
                    heard.setdefault(right, set()).add(left)
    rng = random.Random(seed)
    return AspaSet(
        Aspa(customer, frozenset(p for p in sorted(providers) if rng.random() >= 0.2) or NONE)
        for customer, providers in sorted(heard.items())
        if rng.random() < 0.5
    )


def with_scope(config: GuardConfig, scope: str) -> GuardConfig:
    return config.model_copy(update={"aspa": AspaSettings(scope=scope)})


def run(items: list[FeedItem], mode: str, aspas: AspaSet) -> tuple[float, int, Counter[str], Guard]:
    best, events = float("inf"), Counter[str]()
    base, loaded = build_guard(str(CONFIG)), load_guard_config(str(CONFIG))
    for _ in range(2):
        config = loaded if mode == "off" else with_scope(loaded, mode)
        guard = Guard(
            config, vrps=base.vrps, asrel=base.asrel, aspas=None if mode == "off" else aspas
        )
        events = Counter()
        start = time.process_time()
        for item in items:
            for event in guard.process(item):
                events[event["type"]] += 1
        best = min(best, time.process_time() - start)
    return best, guard.updates, events, guard


def reloads(guard: Guard, aspas: AspaSet) -> None:
    """Time ASPA reloads on a guard holding the whole replay's routes."""
    on_paths: Counter[int] = Counter()
    customers = aspas.customers()
    for _, _, as_path in guard.rib.items():
        on_paths.update(customers.intersection(as_path))
    busiest = on_paths.most_common(1)[0][0]
    rest = [Aspa(c, p, v) for v in (4, 6) for c, p in aspas.table(v).items() if c != busiest]
    changes = [
        (f"AS{busiest} changes (on {on_paths[busiest]:,} routes)", AspaSet([*rest])),
        ("every ASPA changes", AspaSet(Aspa(c, NONE) for c in aspas.customers())),
    ]
    print(f"ASPA reload, {len(guard.rib):,} routes held:")
    for label, new in changes:
        start = time.process_time()
        events = guard.replace_aspas(new, 0.0)
        print(f"  {label}: {time.process_time() - start:.2f} s cpu, {len(events):,} transitions")


def outcomes(items: list[FeedItem], aspas: AspaSet) -> Counter[str]:
    """How the announcements verify (downstream, as at a collector)."""
    out: Counter[str] = Counter()
    for item in items:
        if type(item) is Update and item.announce and item.as_path:
            verdict = verify(item.as_path, aspas, Procedure.DOWNSTREAM, item.prefix.version)
            out[verdict.outcome.value] += 1
    return out


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [DATA / f for f in FILES]
    items: list[FeedItem] = []
    for path in files:
        items += MrtFeed(path)
    aspas = synthetic_aspas(items)
    mix = outcomes(items, aspas)
    total = sum(mix.values())
    print(
        f"{len(items):,} updates from {len(files)} files; {len(aspas):,} synthetic ASPAs; "
        "announcements verify (downstream): "
        + ", ".join(f"{mix[o.value] / total:.0%} {o.value}" for o in Outcome)
    )
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'ASPA':12} {'cpu s':>7} {'updates/s':>10} {'vs off':>7}  aspa-invalid events")
    baseline = 0.0
    for mode in ("off", "monitored", "all"):
        seconds, updates, events, guard = run(items, mode, aspas)
        rate = updates / seconds
        baseline = baseline or rate
        print(
            f"{mode:12} {seconds:7.2f} {rate:10,.0f} {rate / baseline:7.0%}  "
            f"{events['aspa-invalid']:,}"
        )
    reloads(guard, aspas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
