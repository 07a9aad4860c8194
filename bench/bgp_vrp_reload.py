"""Re-validating the RIB on a VRP reload (`Guard.replace_vrps`), with 1,000,000 routes held.

    .venv/bin/python bench/bgp_vrp_reload.py

The RIB: 1,000 monitored /16s, each announced as 100 /24s by 10 peers from its own origin
AS: 1,000,000 routes, every one under a monitored prefix (the worst case: a RIB of routes
nobody monitors is never re-checked at all). The starting VRPs hold one ROA per /16
(its origin, maxLength 24), so every route is valid. Then, CPU time of one process for:

- 1 ROA added for a /24 (another AS): 10 routes re-checked, no validity change;
- 10 /16 ROAs moved to another AS (20 VRP changes): 10,000 routes turn invalid, 1,000
  events raised; and moved back: the 1,000 events resolved;
- all 1,000 /16 ROAs moved (2,000 changes): 1,000,000 routes re-checked, 100,000 events
  raised; and back: 100,000 resolved;
- 10,000 ROAs changed for address space nobody announces: nothing to re-check;

and, for comparison, the announcements' cost per route through `Guard.process`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.config import GuardConfig, MonitoredPrefix
from bgp_guard.engine import Guard
from bgp_guard.rpki import Vrp, VrpSet, diff
from bgp_guard.update import Prefix, Update

SLASH16S, PER_16, PEERS = 1_000, 100, 10
OTHER_AS = 64511


def block(i: int) -> Prefix:
    return Prefix(4, (1 << 24) + (i << 16), 16)  # 1.0.0.0/16 upwards


def origin(i: int) -> int:
    return 100_000 + i


def roas(moved: Iterable[int] = ()) -> list[Vrp]:
    """One ROA per /16 for its origin, except those in `moved`, given to OTHER_AS."""
    away = set(moved)
    return [Vrp(OTHER_AS if i in away else origin(i), block(i), 24) for i in range(SLASH16S)]


def reload(guard: Guard, label: str, vrps: VrpSet) -> None:
    # Counted before, outside the timing: the routes the reload will re-check.
    covered = guard._covered_routes(diff(guard.vrps or VrpSet(()), vrps))
    routes = sum(len(guard.rib.holders(key)) for key in covered)
    start = time.process_time()
    events = guard.replace_vrps(vrps, 1.0)
    seconds = time.process_time() - start
    kinds: dict[str, int] = {}
    for e in events:
        kinds[f"{e['type']} {e['state']}"] = kinds.get(f"{e['type']} {e['state']}", 0) + 1
    print(
        f"{label:46} {routes:>9,} routes re-checked {seconds * 1e3:9.1f} ms"
        + (f" ({seconds / routes * 1e6:.2f} us/route)" if routes else "")
        + f"  events: {kinds or 'none'}"
    )


def main() -> int:
    prefixes = {
        str(block(i)): MonitoredPrefix(origins=(origin(i),), max_length=24) for i in range(SLASH16S)
    }
    start_vrps = VrpSet(roas())
    guard = Guard(GuardConfig(prefixes=prefixes), vrps=start_vrps)
    start = time.process_time()
    for p in range(PEERS):
        peer = f"192.0.2.{p + 1}"
        for i in range(SLASH16S):
            path = (64496 + p, origin(i))
            base = block(i).value
            for j in range(PER_16):
                guard.process(
                    Update(0.0, peer, 64496 + p, Prefix(4, base + (j << 8), 24), True, path)
                )
    seconds = time.process_time() - start
    routes = len(guard.rib)
    print(
        f"RIB: {routes:,} routes from {PEERS} peers under {SLASH16S:,} monitored /16s, "
        f"announced at {routes / seconds:,.0f} updates/s"
    )
    one = VrpSet([*start_vrps.vrps, Vrp(OTHER_AS, Prefix(4, block(7).value + (3 << 8), 24), 24)])
    reload(guard, "1 /24 ROA added", one)
    reload(guard, "(and removed)", start_vrps)
    ten = VrpSet(roas(range(10)))
    reload(guard, "10 /16 ROAs moved (20 VRP changes)", ten)
    reload(guard, "(and moved back)", start_vrps)
    reload(guard, "all 1,000 /16 ROAs moved (2,000 changes)", VrpSet(roas(range(SLASH16S))))
    reload(guard, "(and moved back)", start_vrps)
    elsewhere = [Vrp(OTHER_AS, Prefix(4, (100 << 24) + (k << 8), 24), 24) for k in range(10_000)]
    reload(guard, "10,000 ROAs outside what is held", VrpSet([*start_vrps.vrps, *elsewhere]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
