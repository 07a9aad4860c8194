"""Throughput across the first slice, beside what its parts give alone, in one run.

Builds the built-in demo lab, waits until the controller has programmed every switch, then
runs iperf3 (TCP) between the same pair of sites three ways:

  slice       host -> site OVS (netdev) -> VXLAN -> wireguard-go -> ... -> host
  wireguard   site namespace -> wireguard-go -> site namespace (overlay addresses)
  underlay    site namespace -> veth + Linux bridge -> site namespace (no tunnel)

and tears the lab down. Needs root. Figures vary with machine load; run it on a quiet box.

    .venv/bin/python bench/slice_iperf.py --seconds 5 --from hq --to cloud-a
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import build, demo, flows, names, traffic
from lab.plan import STATE_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run")
    parser.add_argument("--from", dest="source", default="hq", help="client site")
    parser.add_argument("--to", dest="target", default="cloud-a", help="server site")
    args = parser.parse_args()

    config, text = demo.built_in()
    lab_id = names.new_lab_id()
    try:
        plan = build.up(config, lab_id, f"bench {demo.BUILT_IN}", text)
        flows.wait_programmed(config, plan)
        a, b = plan.site(args.source), plan.site(args.target)
        host_a, host_b = plan.hosts_at(a.name)[0], plan.hosts_at(b.name)[0]
        wg_a, wg_b = a.dataplane.wireguard, b.dataplane.wireguard
        runs = {
            "slice": traffic.iperf3(
                host_b.netns,
                host_b.address.ip,
                host_a.netns,
                host_a.label,
                host_b.label,
                args.seconds,
            ),
            "wireguard": traffic.iperf3(
                b.netns,
                wg_b.address,
                a.netns,
                f"{a.name} {wg_a.name}",
                f"{b.name} {wg_b.name}",
                args.seconds,
            ),
            "underlay": traffic.iperf3(
                b.netns, b.underlay, a.netns, f"{a.name} wan", f"{b.name} wan", args.seconds
            ),
        }
    finally:
        build.down(STATE_ROOT / lab_id)
    print(f"iperf3 TCP {args.source} -> {args.target}, {args.seconds} s each, lab {lab_id}")
    print(f"  host MTU {host_a.mtu}, WireGuard MTU {wg_a.mtu}, underlay MTU {a.underlay_mtu}")
    labels = {
        "slice": "slice (OVS netdev + VXLAN + wireguard-go)",
        "wireguard": "bare wireguard-go (site to site)",
        "underlay": "bare underlay (veth + Linux bridge)",
    }
    for key, result in runs.items():
        print(
            f"  {labels[key]:<44} {result.bits_per_second / 1e6:8.0f} Mbit/s"
            f"  ({result.retransmits} retransmits)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
