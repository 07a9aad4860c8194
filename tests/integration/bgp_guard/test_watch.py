"""`overcast guard watch` end to end against a real gobgpd in a namespace: gobgpd announces
one legitimate prefix and a burst of hijacking more-specifics of a monitored prefix over a
live BGP session; the command prints one event per hijack as JSON lines, a withdrawal
moves one to `withdrawn`, the session going down moves all the others there (gobgpd sends
no withdrawals for that) and is a peer-down event until the session is back, and SIGINT
ends it with exit 3 and its latency figures."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overcast import exitcodes
from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import (
    GOBGP_ASN,
    daemon,
    gobgpd,
    gobgpd_neighbour,
    ns_run,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
US, THEM, THEIR_ASN = "192.0.2.10", "192.0.2.1", GOBGP_ASN
HIJACKS = 40
METRICS_PORT = 9179  # inside the test's own namespace, so no clash with anything else

CONFIG = f"""
sites: {{}}
guard:
  prefixes:
    198.51.100.0/24: {{origins: [{THEIR_ASN}]}}
    203.0.113.0/24: {{origins: [64500], max_length: 32}}
  feeds:
    bgp:
      local_asn: 65010
      router_id: {US}
      neighbours: {{{THEM}: {THEIR_ASN}}}
      connect: [{THEM}]
      local_address: {US}
      hold_time: 9
"""


Line = tuple[float, str]


def _lines(stream: Any, out: queue.Queue[Line]) -> None:
    """Each stdout line with the moment it arrived."""
    for line in stream:
        out.put((time.monotonic(), line))


def _next_event(lines: queue.Queue[Line], deadline: float) -> tuple[float, dict[str, Any]]:
    try:
        arrived, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise AssertionError("no event from overcast guard watch before the deadline") from None
    return arrived, dict(json.loads(line))


@dataclass
class Watch:
    """A running `overcast guard watch` next to gobgpd: `gobgp` is gobgpd's API command,
    `lines` the command's stdout lines as they arrive; `returncode` and `stderr` are set
    once it stopped."""

    gobgp: list[str]
    lines: queue.Queue[Line] = field(default_factory=queue.Queue)
    returncode: int | None = None
    stderr: str = ""


@contextlib.contextmanager
def guard_watch(netns: str, tmp_path: Path, config: Path, *flags: str) -> Iterator[Watch]:
    """gobgpd (passive, IPv4 unicast, its API answering), then `overcast guard watch --config
    CONFIG --json FLAGS` in `netns`; on exit the command gets SIGINT, as from an operator's
    Ctrl-C, and gobgpd stops."""
    argv, gobgp = gobgpd(
        tmp_path, THEM, gobgpd_neighbour(THEM, US, 65010, families=("ipv4-unicast",))
    )
    with daemon(netns, argv, tmp_path / "gobgpd.log"):
        ns_run(netns, *gobgp, "global", attempts_until=20)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "overcast", "guard", "watch",
             "--config", str(config), "--json", *flags],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        watch = Watch(gobgp)
        threading.Thread(target=_lines, args=(proc.stdout, watch.lines), daemon=True).start()
        try:
            yield watch
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, watch.stderr = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, watch.stderr = proc.communicate()
            watch.returncode = proc.returncode


def test_watch_flags_hijacks_from_a_live_session(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    with guard_watch(netns, tmp_path, config, "--metrics-port", str(METRICS_PORT)) as watch:
        gobgp, lines = watch.gobgp, watch.lines
        deadline = time.monotonic() + 30
        while "established" not in ns_run(netns, *gobgp, "neighbor", US).lower():
            assert time.monotonic() < deadline, "BGP session did not come up"
            time.sleep(0.1)
        ns_run(netns, *gobgp, "global", "rib", "add", "198.51.100.0/24")  # legitimate
        sent: dict[str, float] = {}
        for i in range(HIJACKS):
            prefix = f"203.0.113.{i * 4}/30"
            sent[prefix] = time.monotonic()
            ns_run(netns, *gobgp, "global", "rib", "add", prefix)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(seen) < HIJACKS:
            arrived, event = _next_event(lines, deadline)
            assert (event["type"], event["state"]) == ("subprefix-origin", "ongoing"), event
            assert event["offending_as"] == THEIR_ASN
            seen[event["prefix"]] = arrived
        assert set(seen) == set(sent)
        ns_run(netns, *gobgp, "global", "rib", "del", "203.0.113.0/30")
        _, event = _next_event(lines, time.monotonic() + 30)
        assert (event["prefix"], event["state"]) == ("203.0.113.0/30", "withdrawn")
        ns_run(netns, *gobgp, "neighbor", US, "disable")  # Cease, no withdrawals
        withdrawn: set[str] = set()
        peer_down: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(withdrawn) < HIJACKS - 1 or not peer_down:
            _, event = _next_event(lines, deadline)
            if event["type"] == "visibility-loss":  # 198.51.100.0/24: its only peer left
                assert event["prefix"] == "198.51.100.0/24", event
                continue
            if event["type"] == "peer-down":  # the session itself, from the 1 s health check
                peer_down.append(event)
                continue
            assert (event["type"], event["state"]) == ("subprefix-origin", "withdrawn")
            withdrawn.add(event["prefix"])
        assert withdrawn == set(sent) - {"203.0.113.0/30"}
        assert (peer_down[0]["about"], peer_down[0]["state"]) == (
            f"BGP neighbour {THEM}",
            "ongoing",
        )
        scrape = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())"
        exposed = ns_run(netns, sys.executable, "-c", scrape)
        assert (
            f'overcast_bgp_guard_events_total{{state="ongoing",type="subprefix-origin"}} {HIJACKS}.0'
            in exposed
        ), exposed
        ns_run(netns, *gobgp, "neighbor", US, "enable")
        deadline = time.monotonic() + 30
        while True:  # the session comes back: the routes again (ongoing), and recovery
            _, event = _next_event(lines, deadline)
            if event["type"] == "peer-down":
                assert event["state"] == "resolved", event
                assert event["rationale"] == f"BGP neighbour {THEM} is Established again."
                break
    assert watch.returncode == exitcodes.ALERT, watch.stderr
    found = re.search(r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms", watch.stderr)
    assert found, watch.stderr
    # Figures for the report, not assertions: from the UPDATE's receipt to the event on
    # stdout (the command's own count), and from `gobgp rib add` to the line read here.
    spread = sorted(seen[p] - sent[p] for p in sent)
    print(
        f"\nwatch: update->event p50 {found[1]} ms p99 {found[2]} ms; "
        f"gobgp add->event line p50 {spread[len(spread) // 2] * 1e3:.1f} ms "
        f"max {spread[-1] * 1e3:.1f} ms"
    )


def test_watch_rechecks_held_routes_when_the_vrp_file_changes(netns: str, tmp_path: Path) -> None:
    """gobgpd's 198.51.100.0/24 is RPKI invalid under the first VRP file; rewriting the file
    (as rpki-client does) resolves the event without any new UPDATE, and rewriting it back
    raises it again: the reload re-validated the route already held."""
    require_binaries("gobgpd", "gobgp")
    vrps = tmp_path / "vrps.json"

    def write_vrps(asn: int, mtime: int) -> None:
        roa = {"asn": asn, "prefix": "198.51.100.0/24", "maxLength": 24, "ta": "test"}
        vrps.write_text(json.dumps({"roas": [roa]}))
        os.utime(vrps, (mtime, mtime))  # watch reloads on a changed modification time

    write_vrps(64511, 1_000_000)
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG.replace("  feeds:", "  vrp_file: vrps.json\n  feeds:"))
    with guard_watch(netns, tmp_path, config) as watch:
        gobgp, lines = watch.gobgp, watch.lines
        ns_run(netns, *gobgp, "global", "rib", "add", "198.51.100.0/24", attempts_until=20)

        def rpki_event() -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while True:  # roa-change events come first
                _, event = _next_event(lines, deadline)
                if event["type"] == "rpki-invalid":
                    return event

        event = rpki_event()  # from the UPDATE itself
        assert (event["state"], event["offending_as"]) == ("ongoing", THEIR_ASN), event
        write_vrps(THEIR_ASN, 2_000_000)
        event = rpki_event()  # from the reload: no UPDATE since
        assert event["state"] == "resolved", event
        assert event["rationale"] == (
            f"198.51.100.0/24 from AS{THEIR_ASN} is now RPKI valid (matching VRP: "
            f"AS{THEIR_ASN} 198.51.100.0/24 max-length 24) after a VRP reload."
        )
        write_vrps(64511, 3_000_000)
        event = rpki_event()
        assert (event["state"], event["offending_as"]) == ("ongoing", THEIR_ASN), event
        assert event["peers"] == [THEM], event
    assert watch.returncode == exitcodes.ALERT, watch.stderr
