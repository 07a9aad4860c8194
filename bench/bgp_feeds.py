"""Parse speed of every shared MRT file on one core: records/s and updates/s.

    .venv/bin/python bench/bgp_feeds.py [FILE...]      (default: all files in shared/data/bgp)

Reference measured on this machine kind: mrtparse reaches about 15,400 records/s.
Each file is read twice and the faster run is reported (the first run warms the page cache).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.feeds.mrt import MrtFeed
from tests.shared import data_dir


def measure(path: Path) -> tuple[int, int, float]:
    best = float("inf")
    records = updates = 0
    for _ in range(2):
        feed = MrtFeed(path)
        start = time.process_time()
        for _update in feed:
            pass
        best = min(best, time.process_time() - start)
        records, updates = feed.stats.records, feed.stats.updates
    return records, updates, best


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted(
        p for p in data_dir("bgp").iterdir() if p.suffix in (".gz", ".bz2")
    )
    print(
        f"{'file':42} {'records':>9} {'updates':>9} {'cpu s':>7} {'records/s':>10} {'updates/s':>10}"
    )
    total_r = total_u = 0
    total_t = 0.0
    for path in files:
        records, updates, seconds = measure(path)
        total_r, total_u, total_t = total_r + records, total_u + updates, total_t + seconds
        print(
            f"{path.name:42} {records:9d} {updates:9d} {seconds:7.2f}"
            f" {records / seconds:10,.0f} {updates / seconds:10,.0f}"
        )
    print(
        f"{'all files':42} {total_r:9d} {total_u:9d} {total_t:7.2f}"
        f" {total_r / total_t:10,.0f} {total_u / total_t:10,.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
