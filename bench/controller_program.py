"""Figures for the controller against a real userspace OVS: how long a full programming
takes (connect -> barrier reply) and how long a restarted controller needs to read the
switch back and find it in sync, as the number of host MACs grows.

Run as root: .venv/bin/python bench/controller_program.py [--macs 1000 10000]
Throwaway namespaces (oc + random id); everything is removed at the end.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.ovsdb import Ovsdb
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from tests.integration.controller.netns import (
    ControllerProcess,
    Namespaces,
    OvsSwitch,
    controller,
    sh,
    unique_prefix,
)

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
"""
PORTS = 10  # internal ports standing in for hosts; the MACs are spread over them
CTL_IP, SW_IP = "198.51.100.1", "198.51.100.2"


def programmed(ctl: ControllerProcess) -> tuple[int, float, float]:
    """Messages sent, ms from first message to barrier reply, ms from connect to reply."""
    ctl.wait_log("programmed (full)", "the switch to be programmed", timeout=300)
    log = ctl.log.read_text()
    sent = int(re.findall(r"sent (\d+) messages \(full\)", log)[0])
    found = re.findall(r"programmed \(full\) in ([\d.]+) ms, ([\d.]+) ms after", log)[0]
    return sent, float(found[0]), float(found[1])


def measure(macs: int, namespaces: Namespaces, prefix: str, work: Path) -> None:
    switch = OvsSwitch(namespaces.add(f"{prefix}-sw"))
    try:
        ctl_ns = namespaces.add(f"{prefix}-ctl")
        namespaces.veth(f"{prefix}m0", switch.netns, f"{prefix}m1", ctl_ns)
        sh("ip", "addr", "add", f"{SW_IP}/30", "dev", f"{prefix}m0", netns=switch.netns)
        sh("ip", "addr", "add", f"{CTL_IP}/30", "dev", f"{prefix}m1", netns=ctl_ns)
        bridge, ports = f"{prefix}br", []
        with Ovsdb(switch.remote) as db:
            db.ensure_bridge(bridge, dpid=1)
            for p in range(PORTS):
                name = f"{prefix}p{p}"
                db.ensure_port(bridge, name, type="internal")
                owned = tuple(
                    f"02:00:{m >> 16 & 0xFF:02x}:{m >> 8 & 0xFF:02x}:{m & 0xFF:02x}:01"
                    for m in range(p, macs, PORTS)
                )
                ports.append(FabricPort(name=name, kind="access", segment="finance", macs=owned))
        fabric = Fabric(
            switches={"hq": SiteSwitch(site="hq", bridge=bridge, dpid=1, ports=tuple(ports))}
        )
        listen = f"{CTL_IP}:6653"
        with controller(ctl_ns, CONFIG, fabric, work, listen, "--audit", "0") as ctl:
            with Ovsdb(switch.remote) as db:
                db.ensure_bridge(bridge, dpid=1, controllers=[f"tcp:{listen}"])
            sent, send_ms, _ = programmed(ctl)
            ctl.proc.send_signal(signal.SIGTERM)
            ctl.proc.wait(timeout=30)
        flows = sum("actions=" in line for line in switch.ofctl("dump-flows", bridge).splitlines())
        # A restart: the switch keeps its flows and reconnects after its backoff. (Never
        # drop the bridge's controller entry instead: OVS flushes all flows when a bridge
        # goes from having controllers to having none.)
        again = work / "again"
        again.mkdir()
        with controller(ctl_ns, CONFIG, fabric, again, listen, "--audit", "0") as ctl:
            resent, _, resync_ms = programmed(ctl)
        print(
            f"{macs:>7} {flows:>7} {sent:>8} {send_ms:>9.0f} {sent / send_ms * 1000:>10.0f} "
            f"{resent:>8} {resync_ms:>10.0f}"
        )
    finally:
        switch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--macs", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print(
        f"{'macs':>7} {'flows':>7} {'messages':>8} {'full ms':>9} {'msgs/s':>10} "
        f"{'resent':>8} {'resync ms':>10}"
    )
    for macs in args.macs:
        namespaces = Namespaces()
        try:
            with tempfile.TemporaryDirectory(prefix="oc-bench-") as work:
                measure(macs, namespaces, unique_prefix(), Path(work))
        finally:
            namespaces.close()


if __name__ == "__main__":
    main()
