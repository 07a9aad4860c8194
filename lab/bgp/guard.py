"""What the lab's guard says: the notices in its JSON-lines sink (what a NOC receives) and
its status page's data (`/api/status`: feeds and the events in its SQLite state)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab import netns
from lab.bgp.plan import GUARD_STATUS_PORT, BgpLabPlan

# Straight to the guard's loopback, whatever http_proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status(plan: BgpLabPlan) -> dict[str, Any]:
    """The guard's /api/status, fetched from inside its namespace (it listens on loopback)."""
    url = f"http://127.0.0.1:{GUARD_STATUS_PORT}/api/status"
    with netns.inside(plan.guard.netns), _DIRECT.open(url, timeout=5) as response:
        doc: dict[str, Any] = json.load(response)
    return doc


def notices(plan: BgpLabPlan) -> list[dict[str, Any]]:
    """Every notice the guard delivered to its JSON-lines sink, oldest first."""
    try:
        text = plan.guard.notices.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    # Each line is one write(2), fsynced (bgp_guard.sinks.jsonl): never half a line.
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Arrival:
    notice: dict[str, Any]
    seconds: float  # from `since` to the moment it was read from the sink


def wait_notice(
    plan: BgpLabPlan,
    wanted: Callable[[dict[str, Any]], bool],
    since: float,
    timeout: float = 20.0,
    after: int = 0,
) -> Arrival | None:
    """The first notice `wanted` accepts past the first `after` ones, polled every 20 ms,
    with the seconds from `since` (time.monotonic()) to its arrival; None after `timeout`."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        found.extend(n for n in notices(plan)[after:] if wanted(n))
        return bool(found)

    if not netns.wait_until(arrived, timeout, interval=0.02):
        return None
    return Arrival(found[0], time.monotonic() - since)
