"""The Mininet network's figures: build time, each provider network's round trip and rate,
a host-to-host round trip and TCP throughput across sites (inside WireGuard), pingall's
time, teardown time. Builds `overcast_net(sites, segments, hosts)` once. Needs root.
Figures vary with machine load (printed).

    .venv/bin/python bench/lab_mininet.py
    .venv/bin/python bench/lab_mininet.py --sites 4 --segments 2 --hosts 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mininet.log import setLogLevel

from lab import netns
from lab.mininet_net import host_name, netem_available, overcast_net


def _rtt_ms(output: str) -> float | None:
    match = re.search(r"= ([\d.]+)/([\d.]+)/", output)
    return float(match.group(2)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setLogLevel("warning")
    figures: dict[str, Any] = {"netem": netem_available(), "load_before": os.getloadavg()[0]}
    start = time.monotonic()
    with overcast_net(sites=args.sites, segments=args.segments, hosts=args.hosts) as net:
        figures["build_s"] = round(time.monotonic() - start, 1)
        lab = net.topo.lab
        s1, s2 = lab.plan.sites[:2]
        for underlay in lab.plan.underlays:
            ping = ["ping", "-c20", "-i0.05", "-W2", str(s2.underlays[underlay.name])]
            out = netns.run(s1.netns, ping, check=False)
            lost = re.search(r"([\d.]+)% packet loss", out)
            figures[f"{underlay.name}_rtt_ms"] = _rtt_ms(out)
            figures[f"{underlay.name}_loss_pct"] = float(lost.group(1)) if lost else None
        a, b = (
            net.get(host_name(h))
            for h in lab.plan.hosts
            if h.segment == lab.plan.hosts[0].segment and h.site in (s1.name, s2.name)
        )
        figures["host_rtt_ms"] = _rtt_ms(a.cmd(f"ping -c10 -i0.05 {b.IP()}"))
        b.cmd("iperf3 -s -D -1")
        time.sleep(0.5)
        out = a.cmd(f"iperf3 -c {b.IP()} -t 3 -J")
        try:
            bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
            figures["tcp_mbit_s"] = round(bps / 1e6, 1)
        except (ValueError, KeyError):
            figures["tcp_mbit_s"] = None
        start_ping = time.monotonic()
        figures["pingall_dropped_pct"] = net.pingAll(timeout=0.5)
        figures["pingall_s"] = round(time.monotonic() - start_ping, 1)
        stop = time.monotonic()
    figures["teardown_s"] = round(time.monotonic() - stop, 1)
    figures["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
