"""Figures for one site pair built by the bridge: apply/re-apply/remove times, and iperf3
TCP throughput over the bare underlay, over WireGuard, and over VXLAN inside WireGuard.

Run as root: .venv/bin/python bench/bridge_tunnel.py [--seconds 3]
Two throwaway namespaces joined by a veth; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import ip_interface
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.apply import apply_site, remove_site
from bridge.keys import KeyStore
from bridge.plan import SitePlan, plan_site
from lab import netns
from overcast.config import loads

CONFIG = """\
sites:
  hq:    {role: enterprise, underlay: 192.0.2.1}
  cloud: {role: provider, underlay: 192.0.2.2}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}
"""
VXLAN_NET = ("198.51.100.1", "198.51.100.2")  # test addresses on the two VXLAN ends

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def iperf(server_ns: str, client_ns: str, address: str, seconds: int) -> float:
    """Gbit/s received by `address` in `server_ns` from a TCP sender in `client_ns`."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    client_ns,
                    "iperf3",
                    "-c",
                    address,
                    "-t",
                    str(seconds),
                    "-J",
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                check=False,
            )
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the server is not listening yet
        result = json.loads(out.stdout)
        if "error" in result:
            raise RuntimeError(f"iperf3 to {address}: {result['error']}")
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration per run")
    args = parser.parse_args()

    run_id = secrets.token_hex(2)
    config = loads(CONFIG)
    sites = list(config.sites)
    ns = {site: f"ocbn{run_id}-{site}" for site in sites}
    with tempfile.TemporaryDirectory(prefix="ocbench-") as tmp:
        keys, run_dir = KeyStore(Path(tmp) / "keys"), Path(tmp) / "run"
        public = keys.ensure_all(sites)
        plans: dict[str, SitePlan] = {
            s: plan_site(config, s, public, prefix=f"ob{run_id}") for s in sites
        }
        try:
            for site in sites:
                netns.ensure(ns[site])
            netns.veth(ns["hq"], "u-cloud", ns["cloud"], "u-hq", mtu=1500)
            for site, dev in (("hq", "u-cloud"), ("cloud", "u-hq")):
                netns.up(ns[site], dev, ip_interface(f"{config.sites[site].underlay}/24"))

            def apply_all() -> None:
                for s in sites:
                    apply_site(plans[s], netns=ns[s], keys=keys, run_dir=run_dir)

            _, cold = timed(apply_all)
            _, warm = timed(apply_all)
            backend = apply_site(plans["hq"], netns=ns["hq"], keys=keys, run_dir=run_dir).backend
            tunnels = {s: next(plans[s].tunnels()) for s in sites}
            for site, address in zip(sites, VXLAN_NET, strict=True):
                netns.up(ns[site], tunnels[site].name, ip_interface(f"{address}/30"))
            seg = plans["hq"].segments[0]
            print(
                f"backend: {backend}; wg MTU {plans['hq'].wireguard.mtu}, inner MTU {seg.inner_mtu}"
            )
            print(f"apply 2 sites: {cold:.0f} ms cold, {warm:.0f} ms re-apply (no change)")
            paths = {
                "bare veth underlay": str(config.sites["cloud"].underlay),
                "WireGuard": str(plans["cloud"].wireguard.address),
                "VXLAN inside WireGuard": VXLAN_NET[1],
            }
            for name, address in paths.items():
                gbps = iperf(ns["cloud"], ns["hq"], address, args.seconds)
                print(f"iperf3 TCP {args.seconds}s, {name:<24} {gbps * 1000:8.0f} Mbit/s")
            _, gone = timed(
                lambda: [remove_site(plans[s], netns=ns[s], run_dir=run_dir) for s in sites]
            )
            print(f"remove 2 sites: {gone:.0f} ms")
        finally:
            for site in sites:
                remove_site(plans[site], netns=ns[site], run_dir=run_dir)
                netns.remove(ns[site])


if __name__ == "__main__":
    main()
