"""Figures for the controller's pure core: how long planning, diffing and lookups take as
the fabric grows (sites x segments x hosts per site and segment).

Run: .venv/bin/python bench/controller_plan.py [--repeat 5]
No root, no switch: the plan is applied to the model switch (controller.fakeoftable).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.fakeoftable import FakeSwitch
from controller.pipeline import diff, plan_switch, program
from overcast.config import OvercastConfig, loads
from overcast.fabric import Fabric, FabricPort, SiteSwitch

T = TypeVar("T")
SIZES = ((3, 2, 2), (10, 10, 10), (20, 50, 10))  # sites, segments, hosts per site+segment


def build(sites: int, segments: int, hosts: int) -> tuple[OvercastConfig, Fabric]:
    names = [f"s{i}" for i in range(sites)]
    lines = ["sites:"]
    lines += [
        f"  {n}: {{role: enterprise, underlay: 10.0.{i // 250}.{i % 250 + 1}}}"
        for i, n in enumerate(names)
    ]
    lines.append("segments:")
    lines += [
        f"  g{g}: {{mode: l2, vni: {100 + g}, vlan: {10 + g}, sites: [{', '.join(names)}]}}"
        for g in range(segments)
    ]
    switches = {}
    for i, site in enumerate(names):
        ports = [
            FabricPort(
                name=f"h{g}-{h}",
                kind="access",
                segment=f"g{g}",
                macs=(f"02:00:{i:02x}:{g // 256:02x}:{g % 256:02x}:{h:02x}",),
            )
            for g in range(segments)
            for h in range(hosts)
        ]
        ports += [
            FabricPort(name=f"vx{g}-{j}", kind="tunnel", segment=f"g{g}", peer=peer)
            for g in range(segments)
            for j, peer in enumerate(names)
            if peer != site
        ]
        switches[site] = SiteSwitch(site=site, bridge="br", dpid=i + 1, ports=tuple(ports))
    return loads("\n".join(lines)), Fabric(switches=switches)


def best(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    assert result is not None
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs (default 5)")
    args = parser.parse_args()
    header = (
        f"{'sites':>5} {'segs':>5} {'hosts':>5} {'ports':>6} {'flows':>7} {'groups':>6} "
        f"{'plan ms':>8} {'diff ms':>8} {'diff msgs':>9} {'lookups/s':>10}"
    )
    print(header)
    for sites, segments, hosts in SIZES:
        config, fabric = build(sites, segments, hosts)
        ports = fabric.switches["s0"].ports
        ofports = {p.name: n for n, p in enumerate(ports, start=1)}
        plan_s, plan = best(args.repeat, partial(plan_switch, config, fabric, "s0", ofports))
        # One host re-plugged on another port number: the typical incremental change.
        moved = {**ofports, ports[0].name: len(ports) + 1}
        new = plan_switch(config, fabric, "s0", moved)
        diff_s, messages = best(args.repeat, partial(diff, plan, new))
        switch = FakeSwitch()
        switch.apply(program(plan))
        mac = ports[1].macs[0]
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            switch.forward(1, mac, ports[0].macs[0])
        rate = n / (time.perf_counter() - start)
        print(
            f"{sites:>5} {segments:>5} {hosts:>5} {len(ports):>6} {len(plan.flows):>7} "
            f"{len(plan.groups):>6} {plan_s * 1000:>8.1f} {diff_s * 1000:>8.1f} "
            f"{len(messages):>9} {rate:>10.0f}"
        )


if __name__ == "__main__":
    main()
