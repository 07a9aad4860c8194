"""Broadcast and multicast frames crossing the tunnels, with and without the ARP/ND proxy.

    sudo .venv/bin/python bench/controller_arp_proxy.py [--hosts 3]

Builds the same lab twice (proxy off, then on): three sites, each a userspace OVS in its own
namespace, a full mesh of veth "tunnels" named as the bridge plan names VXLAN ports, and
`--hosts` host namespaces per site on one segment, IPv4 and IPv6. The real `overcast
controller run` derives the fabric from the config and OVSDB. Then every host, its ARP and
ND cache flushed, pings every other host once over IPv4 and once over IPv6, and a capture
on every tunnel counts the frames that crossed it, by kind. Same traffic both times.
Needs root; everything it creates is removed at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.ovsdb import Ovsdb  # noqa: E402
from tests.integration.controller.netns import (  # noqa: E402
    Namespaces,
    OvsSwitch,
    connect,
    controller,
    sh,
    switch_mesh,
    unique_prefix,
)

SITES = ("hq", "branch", "cloud")
KINDS = ("arp broadcast", "nd multicast", "other multicast", "unicast")

# Counts every frame on one interface (both directions: each crossing once) until SIGTERM.
SNIFF = r"""
import json, signal, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((sys.argv[1], 0))
counts = {k: 0 for k in ("arp broadcast", "nd multicast", "other multicast", "unicast")}
def done(*_):
    print(json.dumps(counts), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    f = s.recv(65535)
    if not f[0] & 1:
        counts["unicast"] += 1
    elif f[12:14] == b"\x08\x06":
        counts["arp broadcast"] += 1
    elif f[12:14] == b"\x86\xdd" and len(f) > 54 and f[20] == 58 and f[54] in (135, 136):
        counts["nd multicast"] += 1
    else:
        counts["other multicast"] += 1
"""


def config(bridge: str, hosts: int, proxy: bool) -> str:
    access = ", ".join(f"h{k}: finance" for k in range(hosts))
    sites = "\n".join(
        f"  {s}: {{role: enterprise, underlay: 192.0.2.{i + 1}, "
        f"switch: {{bridge: {bridge}, access: {{{access}}}}}}}"
        for i, s in enumerate(SITES)
    )
    return (
        f"sites:\n{sites}\nsegments:\n"
        f"  finance: {{mode: l2, vni: 100, vlan: 10, sites: [{', '.join(SITES)}]}}\n"
        f"controller:\n  proxy: {{finance: {'true' if proxy else 'false'}}}\n"
    )


def tunnel(peer: str) -> str:
    return f"vx100-{SITES.index(peer)}"


def run(hosts: int, proxy: bool) -> tuple[dict[str, int], int, float]:
    """One lab: the frames that crossed the tunnels, the pings answered, the seconds taken."""
    prefix, namespaces = unique_prefix(), Namespaces()
    switches: dict[str, OvsSwitch] = {}
    sniffers: list[subprocess.Popen[str]] = []
    try:
        ctl_ns, bridge, targets = switch_mesh(namespaces, prefix, SITES, switches, tunnel)
        host_ns: list[tuple[str, str, str]] = []  # (namespace, IPv4, IPv6)
        for i, site in enumerate(SITES):
            sw = switches[site]
            with Ovsdb(sw.remote) as db:
                for k in range(hosts):
                    n = i * hosts + k
                    ns = namespaces.host(
                        f"{prefix}-h{n}",
                        sw.netns,
                        f"h{k}",
                        f"02:00:00:00:0b:{n + 1:02x}",
                        f"192.0.2.{40 + n}/24",
                    )
                    db.ensure_port(bridge, f"h{k}")
                    for scope in ("all", "default", "eth0"):
                        sh(
                            "sysctl",
                            "-qw",
                            f"net.ipv6.conf.{scope}.router_solicitations=0",
                            netns=ns,
                        )
                        sh("sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=0", netns=ns)
                    v6 = f"2001:db8::{40 + n:x}"
                    sh("ip", "-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad", netns=ns)
                    host_ns.append((ns, f"192.0.2.{40 + n}", v6))
        workdir = Path(tempfile.mkdtemp(prefix="oc-arp-proxy-"))
        ovsdb = [f"--ovsdb={s}={switches[s].remote}" for s in SITES]
        with controller(
            ctl_ns, config(bridge, hosts, proxy), None, workdir, "0.0.0.0:6653", *ovsdb
        ) as ctl:
            connect(switches, bridge, targets)
            ctl.wait_log(
                "programmed (full)", "every switch to be programmed", count=len(SITES), timeout=60
            )
            time.sleep(3.0)  # the MLD reports of the new IPv6 addresses are over
            for a, b in combinations(SITES, 2):  # one end of each tunnel sees all its frames
                cmd = [
                    "ip",
                    "netns",
                    "exec",
                    switches[a].netns,
                    sys.executable,
                    "-c",
                    SNIFF,
                    tunnel(b),
                ]
                sniffers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            for s in sniffers:
                assert s.stdout is not None and s.stdout.readline().strip() == "ready"
            began, answered = time.monotonic(), 0
            for ns, _, _ in host_ns:
                sh("ip", "neigh", "flush", "dev", "eth0", netns=ns)
                for other, v4, v6 in host_ns:
                    if other == ns:
                        continue
                    for address in (v4, v6):
                        argv = [
                            "ip",
                            "netns",
                            "exec",
                            ns,
                            "ping",
                            "-n",
                            "-q",
                            "-c",
                            "1",
                            "-W",
                            "2",
                            address,
                        ]
                        answered += (
                            subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
                        )
            seconds = time.monotonic() - began
            time.sleep(0.5)
            totals = dict.fromkeys(KINDS, 0)
            for s in sniffers:
                s.send_signal(signal.SIGTERM)
                out, _ = s.communicate(timeout=10)
                for kind, count in json.loads(out.strip().splitlines()[-1]).items():
                    totals[kind] += count
            return totals, answered, seconds
    finally:
        for s in sniffers:
            if s.poll() is None:
                s.kill()
        for sw in switches.values():
            sw.close()
        namespaces.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=3, help="hosts per site (3 sites)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces and Open vSwitch)", file=sys.stderr)
        return 2
    n = args.hosts * len(SITES)
    pings = n * (n - 1) * 2
    print(f"{n} hosts on 3 sites, each pings every other once over IPv4 and IPv6 ({pings} pings)")
    results = {}
    for proxy in (False, True):
        counts, answered, seconds = run(args.hosts, proxy)
        results[proxy] = counts
        print(
            f"proxy {'on ' if proxy else 'off'}: {answered}/{pings} pings answered in {seconds:.1f} s; frames crossing the tunnels: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    off, on = results[False], results[True]
    for kinds, label in (
        (("arp broadcast",), "ARP broadcasts"),
        (("nd multicast",), "ND multicasts"),
        (("arp broadcast", "nd multicast", "other multicast"), "all broadcast and multicast"),
    ):
        a, b = sum(off[k] for k in kinds), sum(on[k] for k in kinds)
        cut = f"{100 * (a - b) / a:.0f} % fewer" if a else "none either way"
        print(f"{label} across the tunnels: {a} -> {b} ({cut})")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
