"""`guard replay` speed on RIS-live JSON lines, start-up included: the workload of issue 13
(BGPalerter 2.0.1 on the same kind of input: about 16,000-18,000 messages/s).

    .venv/bin/python bench/bgp_ris_live_replay.py [--messages 17216] [--prefixes 501] [--runs 5]

The input is made from a real RIS MRT update file (shared/data/bgp, 2016-08-11 16:00):
each MRT UPDATE becomes one RIS-live `ris_message` (same peer, time, AS path, communities,
announced and withdrawn prefixes), as the websocket would have sent it. The monitored
prefixes are the first N distinct announced prefixes, each with the origin seen first, so
most routes are legitimate and some (origin changes, more-specifics) raise events. Each run
is a fresh `python -m overcast guard replay --json` process; "total" is its wall time from
exec to exit, "processing" the rate it reports itself; on a machine busy with other work the
CPU seconds the process used (start-up included) are the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.update import Update
from tests.shared import data_dir
from tests.unit.bgp_guard.helpers import ris_live_messages

REPO = Path(__file__).resolve().parents[1]
SOURCE = "ris-updates.20160811.1600.gz"


def ris_messages(count: int) -> tuple[list[dict[str, Any]], list[Update]]:
    """RIS-live messages grouped from the MRT file's Updates, and the Updates."""
    return ris_live_messages(MrtFeed(data_dir("bgp") / SOURCE), count)


def config(updates: list[Update], count: int) -> str:
    origins: dict[str, int] = {}
    for update in updates:
        origin = update.origin
        if update.announce and isinstance(origin, int):
            origins.setdefault(str(update.prefix), origin)
        if len(origins) == count:
            break
    lines = [f"    {p}: {{origins: [{a}]}}" for p, a in origins.items()]
    return "sites: {}\nguard:\n  prefixes:\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=17216)
    parser.add_argument("--prefixes", type=int, default=501)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    messages, updates = ris_messages(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        stream, conf = Path(tmp) / "ris-live.json", Path(tmp) / "overcast.yaml"
        stream.write_text("".join(json.dumps(m) + "\n" for m in messages))
        conf.write_text(config(updates, args.prefixes))
        totals, rates, cpus = [], [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "overcast", "guard", "replay", "--json",
                 "--config", str(conf), str(stream)],
                cwd=REPO, capture_output=True, text=True, check=False,
            )  # fmt: skip
            totals.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            found = re.search(r"\(([\d,]+)/s\)", proc.stderr)
            assert proc.returncode in (0, 3) and found, proc.stderr
            rates.append(int(found[1].replace(",", "")))
        events = len(proc.stdout.splitlines())
    n = len(messages)
    print(
        f"{n} RIS-live messages ({len(updates)} updates), {args.prefixes} monitored prefixes, "
        f"{events} events, {args.runs} runs:\n"
        f"  including start-up: median {n / statistics.median(totals):,.0f} msg/s, "
        f"best {n / min(totals):,.0f} msg/s ({statistics.median(totals) * 1e3:.0f} ms per run)\n"
        f"  including start-up, per CPU second (what a loaded machine cannot hide): median "
        f"{n / statistics.median(cpus):,.0f} msg/s, best {n / min(cpus):,.0f} msg/s\n"
        f"  processing only (the command's own figure, records/s): median "
        f"{statistics.median(rates):,.0f}, best {max(rates):,.0f}\n"
        f"  load average while measuring: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
