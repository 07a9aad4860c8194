"""bgp_guard end to end on one core, and the RIB's memory for a full table.

    .venv/bin/python bench/bgp_detect.py [FILE...]   (default: the shared RIS/RouteViews files)

1. File -> events: each MRT file is replayed through `Guard` (MRT parsing, RIB, every
   detector) with the end-to-end test config, which monitors real prefixes in the 2016 RIS
   file and has VRPs, AS relationships and own-ASN neighbour checks on. CPU time of one
   process (best of 2 runs), so it is updates/s on one core. Target >= 50,000 updates/s.
   The same again with 100,000 extra monitored prefixes, to show the prefix index's cost.
2. Memory: 1,000,000 distinct prefixes (800k IPv4, 200k IPv6) announced by one peer, each
   with a fresh AS-path tuple drawn from 300,000 distinct paths, fed through
   `Guard.process`; reported as the growth of the process's resident set. Target <= 500 MB.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.cli import build_guard, load_guard_config
from bgp_guard.config import GuardConfig, MonitoredPrefix
from bgp_guard.engine import Guard
from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.update import Prefix, Update
from tests.shared import data_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "unit" / "bgp_guard" / "replay_ris" / "overcast.yaml"
FILES = [
    "ris-updates.20160811.1600.gz",
    "ris-updates.20070211.0141.gz",
    "ris-updates.et-header.2015.gz",
    "ris-rrc06.updates.1427846400.gz",
    "routeviews-jinx.updates.1427846400.bz2",
]


def replay(path: Path, extra_prefixes: int) -> tuple[int, int, float]:
    best, updates, events = float("inf"), 0, 0
    for _ in range(2):
        guard = build_guard(str(CONFIG))
        if extra_prefixes:
            config = load_guard_config(str(CONFIG))
            guard = Guard(_with_extra(config, extra_prefixes), guard.vrps, guard.asrel)
        start = time.process_time()
        events = 0
        for update in MrtFeed(path):
            events += len(guard.process(update))
        best = min(best, time.process_time() - start)
        updates = guard.updates
    return updates, events, best


def _with_extra(config: GuardConfig, count: int) -> GuardConfig:
    """`count` more monitored /22../24s in 240.0.0.0/4 (reserved, RFC 1112 section 4), a
    block nobody announces: pure index overhead on every update."""
    rng = random.Random(1)
    prefixes: dict[str, MonitoredPrefix] = {str(k): v for k, v in config.prefixes.items()}
    spec = MonitoredPrefix(origins=(64500,))
    while len(prefixes) < len(config.prefixes) + count:
        length = rng.choice((22, 23, 24))
        value = (240 << 24) + (rng.getrandbits(length - 4) << (32 - length))
        prefixes[str(Prefix(4, value, length))] = spec
    return GuardConfig.model_validate({**config.model_dump(), "prefixes": prefixes})


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rib_memory(count: int = 1_000_000, distinct_paths: int = 300_000) -> None:
    rng = random.Random(7)
    pool = [
        [rng.randrange(1, 400_000) for _ in range(rng.choice((2, 3, 3, 4, 4, 4, 5, 5, 6, 7)))]
        for _ in range(distinct_paths)
    ]
    v6 = count // 5
    guard = Guard(GuardConfig())
    gc.collect()
    before = rss()
    start = time.process_time()
    for i in range(count):
        if i < count - v6:
            prefix = Prefix(4, (1 << 24) + (i << 8), 24)  # 1.0.0.0/24 upwards
        else:
            prefix = Prefix(6, (0x2001 << 112) + (i << 80), 48)
        guard.process(
            Update(
                0.0, "192.0.2.1", 64496, prefix, True, tuple(pool[rng.randrange(distinct_paths)])
            )
        )
    seconds = time.process_time() - start
    gc.collect()
    grown = rss() - before
    print(
        f"RIB: {len(guard.rib):,} routes, {guard.rib.distinct_paths:,} distinct AS paths: "
        f"RSS +{grown / 2**20:,.0f} MB ({grown / count:,.0f} bytes/route; target <= 500 MB), "
        f"filled at {count / seconds:,.0f} updates/s"
    )


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [data_dir("bgp") / f for f in FILES]
    print(
        f"{'file -> events (1 core)':42} {'updates':>9} {'events':>7} {'cpu s':>7} {'updates/s':>10}"
    )
    for extra in (0, 100_000):
        total_u, total_t = 0, 0.0
        for path in files:
            updates, events, seconds = replay(path, extra)
            total_u, total_t = total_u + updates, total_t + seconds
            print(
                f"{path.name:42} {updates:9d} {events:7d} {seconds:7.2f} {updates / seconds:10,.0f}"
            )
        label = "all files" + (f", +{extra:,} monitored" if extra else "")
        print(f"{label:42} {total_u:9d} {'':7} {total_t:7.2f} {total_u / total_t:10,.0f}")
    rib_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
