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
CPU seconds the process used (start-up included) are the steadier figure. The processes
read compiled bytecode, as an installed package does (pip compiles it at install): a first,
uncounted run writes it to a scratch cache even where PYTHONDONTWRITEBYTECODE is set.

A replay keeps the policy it compiled from the config (`bgp_guard.policycache`): runs after
the first on the same config start without the schema library. Both are measured: "first
run on a config" with an empty cache each time, "config seen before" with the cache the
uncounted run filled.

Every run's events must equal those of the same Updates, taken from the MRT file, replayed
in-process straight through the engine (no RIS-live decoding, no prefilter): the fast paths
change nothing found. A last, separate process splits its CPU time into start-up (imports),
the config (the guard: section and the Guard built from it), reading and decoding the
file, and the engine.
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

from bgp_guard.engine import Guard
from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.update import Update
from overcast.configfile import load_section
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


def reference_events(updates: list[Update], conf: Path) -> list[dict[str, Any]]:
    """The events of `updates` straight through the engine, as JSON would carry them."""
    from bgp_guard.config import GuardConfig

    guard = Guard(load_section(conf, "guard", GuardConfig))
    events = [e for u in updates for e in guard.process(u)] + guard.finish(updates[-1].time)
    return [json.loads(json.dumps(e)) for e in events]


# The phases of one replay, timed in CPU seconds in a fresh interpreter.
PHASES = """
import sys, time
from time import process_time as cpu
start = cpu()
from overcast.cli import build_parser
build_parser(["guard"])
from bgp_guard import cli, replay
from bgp_guard.engine import Guard
from bgp_guard.metrics import unserved
from overcast import collector
imported = cpu()
collector.quiet(100_000, 100)  # as the replay command does
with unserved():  # as the replay command runs
    guard = cli.build_guard(sys.argv[1], cached=True)
    configured = cpu()
    updates, _ = replay.merged([sys.argv[2]], guard.wanted())
    items = list(updates)
    decoded = cpu()
    for item in items:
        guard.process(item)
    guard.finish(items[-1].time)
    done = cpu()
print(start, imported - start, configured - imported, decoded - configured, done - decoded)
"""


def replay(conf: Path, stream: Path, env: dict[str, str]) -> tuple[float, float, int, list[Any]]:
    """One `guard replay` process: wall and CPU seconds, its own rate, and its events."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "overcast", "guard", "replay", "--json",
         "--config", str(conf), str(stream)],
        cwd=REPO, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"\(([\d,]+)/s\)", proc.stderr)
    assert proc.returncode in (0, 3) and found, proc.stderr
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return wall, cpu, int(found[1].replace(",", "")), events


def figures(n: int, runs: list[tuple[float, float, int, list[Any]]]) -> str:
    totals, cpus, rates = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
    return (
        f"    including start-up: median {n / statistics.median(totals):,.0f} msg/s, "
        f"best {n / min(totals):,.0f} msg/s ({statistics.median(totals) * 1e3:.0f} ms per run)\n"
        f"    including start-up, per CPU second (what a loaded machine cannot hide): median "
        f"{n / statistics.median(cpus):,.0f} msg/s, best {n / min(cpus):,.0f} msg/s\n"
        f"    processing only (the command's own figure, records/s): median "
        f"{statistics.median(rates):,.0f}, best {max(rates):,.0f}\n"
    )


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
        expected = reference_events(updates, conf)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        env["XDG_CACHE_HOME"] = str(Path(tmp) / "seen")
        replay(conf, stream, env)  # compiles the bytecode, and the policy of `conf`
        first, seen = [], []
        for run in range(args.runs):  # interleaved: both see the same machine
            first.append(replay(conf, stream, env | {"XDG_CACHE_HOME": f"{tmp}/first{run}"}))
            seen.append(replay(conf, stream, env))
        for *_, got in first + seen:
            assert got == expected, "the replay's events differ from the engine's on the Updates"
        phases = subprocess.run(
            [sys.executable, "-c", PHASES, str(conf), str(stream)],
            cwd=REPO, capture_output=True, text=True, check=True, env=env,
        ).stdout.split()  # fmt: skip
    n = len(messages)
    print(
        f"{n} RIS-live messages ({len(updates)} updates), {args.prefixes} monitored prefixes, "
        f"{len(expected)} events (the same as the engine's on the Updates), {args.runs} runs "
        "each:\n"
        "  config seen before (its compiled policy cached):\n"
        + figures(n, seen)
        + "  first run on a config (validated with the schema library):\n"
        + figures(n, first)
        + f"  CPU seconds of one run on a config seen before: start-up "
        f"{float(phases[0]) + float(phases[1]):.3f} (interpreter {float(phases[0]):.3f}, "
        f"imports {float(phases[1]):.3f}), config {float(phases[2]):.3f}, read and decode "
        f"{float(phases[3]):.3f}, engine {float(phases[4]):.3f}\n"
        f"  load average while measuring: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
