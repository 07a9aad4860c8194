"""Update-to-webhook latency of `overcast guard watch`: from the guard's receipt of a
hijacking UPDATE to the webhook receiver's receipt of the "open" notice.

    sudo .venv/bin/python bench/bgp_guard_notify.py [--hijacks 200]

Needs root (a throwaway namespace) and gobgpd/gobgp. gobgpd announces one /32 more-specific
of a monitored prefix at a time (`gobgp global rib add`, one UPDATE each) over a live BGP
session to `guard watch`, whose only sink is a webhook (the generic template) to an aiohttp
receiver in the same namespace. The start is the event's own time (the UPDATE's receipt by
the guard's BGP session), the end the receiver's clock when the POST arrived: so the figure
covers detection, the state file (SQLite, WAL) and the HTTP delivery. Same clock, same host.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.bgp_guard.conftest import (
    GOBGP_ASN,
    daemon,
    gobgpd,
    gobgpd_neighbour,
    loopback_netns,
    ns_run,
)
from tests.integration.bgp_guard.sinkparts import REPO, receiver, records, wait_for

US, THEM, HTTP = "192.0.2.10", "192.0.2.1", 8080

CONFIG = f"""
sites: {{}}
guard:
  prefixes: {{203.0.113.0/24: {{origins: [64500], max_length: 32}}}}
  notify: {{repeat_every: 0}}
  sinks: {{hook: {{type: webhook, url: "http://127.0.0.1:{HTTP}/"}}}}
  feeds:
    bgp: {{local_asn: 65010, router_id: {US}, neighbours: {{{THEM}: {GOBGP_ASN}}},
           connect: [{THEM}], local_address: {US}, hold_time: 9}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hijacks", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, loopback_netns("ocnotify") as netns:
        tmp_path = Path(tmp)
        config, hooks = tmp_path / "overcast.yaml", tmp_path / "hooks.jsonl"
        config.write_text(CONFIG)
        argv, gobgp = gobgpd(
            tmp_path, THEM, gobgpd_neighbour(THEM, US, 65010, families=("ipv4-unicast",))
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(receiver("http", str(HTTP), str(hooks), netns=netns))
            stack.enter_context(daemon(netns, argv, tmp_path / "gobgpd.log"))
            ns_run(netns, *gobgp, "global", attempts_until=20)
            watch = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "overcast", "guard",
                 "watch", "--config", str(config)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                wait_for(
                    lambda: "established" in ns_run(netns, *gobgp, "neighbor", US).lower(),
                    30,
                    "the BGP session",
                )
                base = int(ipaddress.IPv4Address("203.0.113.0"))
                for i in range(args.hijacks):
                    prefix = f"{ipaddress.IPv4Address(base + i % 256)}/32"
                    ns_run(netns, *gobgp, "global", "rib", "add", prefix)
                    if i % 256 == 255:  # reuse the /32s: withdraw them all, then again
                        ns_run(netns, *gobgp, "global", "rib", "del", "all")
                wait_for(
                    lambda: (
                        sum(r["body"]["notice"] == "open" for r in records(hooks)) >= args.hijacks
                    ),
                    60,
                    "every open at the webhook",
                )
            finally:
                watch.send_signal(signal.SIGINT)
                watch.wait(20)
        got = records(hooks)
    lags = sorted(
        (r["received"] - r["body"]["event"]["time"]) * 1e3
        for r in got
        if r["body"]["notice"] == "open"
    )

    def pct(q: float) -> float:
        return float(lags[min(len(lags) - 1, int(q * len(lags)))])

    print(
        f"update -> webhook (open notice), {len(lags)} hijacks: p50 {pct(0.5):.1f} ms, "
        f"p99 {pct(0.99):.1f} ms, max {lags[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
