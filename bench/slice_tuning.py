"""Throughput levers for the stretched segment, each measured, with CPU per megabit.

Builds the built-in demo lab once, then for each setting in turn (cumulative, in the order
given) runs iperf3 (TCP) host -> host across the slice and site -> site over bare
wireguard-go, alternating, and prints the ratio with retransmits. During each slice run it
samples the CPU time of every process in the lab's namespaces (and the machine's softirq
time), so the figures say which process spends how much CPU per megabit.

Settings:
  baseline    the lab as built: host veths with checksum offload off (ARCHITECTURE.md)
  tso         other_config:userspace-tso-enable=true (ovs-vswitchd restarted) and the host
              veths' checksum and TSO offloads back on: OVS takes 64 KiB TCP frames with a
              virtio-net header and the kernel VXLAN device segments them (GSO)
  by-site     each site's ovs-vswitchd and wireguard-go pinned to one core: hq's to CPU 0,
              the other site's to CPU 1 (a pipeline split between the two cores)
  by-role     both ovs-vswitchd on CPU 0, both wireguard-go on CPU 1
  unpinned    the pinning undone
  afxdp       host ports as OVS afxdp ports (generic XDP on the veth; one PMD thread per
              switch that sleeps when idle, other_config:pmd-maxsleep)
  kernel-bridge  (last; takes the switch away) each site's host port and VXLAN tunnels on a
              Linux bridge instead of OVS: the frame never leaves the kernel, as with OVS's
              kernel datapath, which this machine lacks (no openvswitch module)

Needs root. The machine is shared: the load average is printed with every figure.

    .venv/bin/python bench/slice_tuning.py --seconds 5 --runs 2 baseline tso by-site
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyroute2.netns

from lab import build, demo, flows, names, netns, switch, traffic
from lab.plan import STATE_ROOT, LabPlan
from lab.registry import Registry

TICK = os.sysconf("SC_CLK_TCK")
SETTINGS = ("baseline", "tso", "by-site", "by-role", "unpinned", "afxdp", "kernel-bridge")


@dataclass(frozen=True)
class Run:
    slice_mbps: float
    slice_retransmits: int
    wg_mbps: float
    wg_retransmits: int
    cpu: dict[str, float]  # process label -> CPU seconds per Mbit... of the slice run
    load: float


def process_ticks(plan: LabPlan) -> dict[int, tuple[str, int]]:
    """pid -> (label, utime + stime) for every process in the lab's namespaces."""
    where = {s.netns: s.name for s in plan.sites} | {h.netns: h.site + "-host" for h in plan.hosts}
    out = {}
    for ns, pids in pyroute2.netns.ns_pids().items():
        if ns not in where:
            continue
        for pid in pids:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = (f"{where[ns]} {comm}", int(fields[11]) + int(fields[12]))
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, softirq) jiffies of the whole machine (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return user + nice + system + irq + softirq + steal, softirq


def slice_run(plan: LabPlan, seconds: int) -> tuple[traffic.Throughput, dict[str, float]]:
    """iperf3 host -> host across the slice, with each lab process's CPU seconds."""
    a, b = plan.hosts_at("hq")[0], plan.hosts_at("cloud-a")[0]
    server = subprocess.Popen(
        ["ip", "netns", "exec", b.netns, "iperf3", "-s", "-1", "-B", str(b.address.ip)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    netns.wait_until(
        lambda: bool(netns.run(b.netns, ["ss", "-Hltn", "sport = :5201"]).strip()), 10.0
    )
    client = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, "iperf3", "-c", str(b.address.ip), "-t", str(seconds),
         "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(1.0)  # past slow start; the sample covers the steady part of the run
    before, m_before = process_ticks(plan), machine_ticks()
    time.sleep(seconds - 1.5)
    after, m_after = process_ticks(plan), machine_ticks()
    out, _ = client.communicate(timeout=seconds + 30)
    server.wait(timeout=30)
    result = traffic.parse_iperf3(out, a.label, b.label)
    cpu: dict[str, float] = defaultdict(float)
    for pid, (label, ticks) in after.items():
        if pid in before:
            cpu[label] += (ticks - before[pid][1]) / TICK
    cpu["softirq (whole machine)"] = (m_after[1] - m_before[1]) / TICK
    busy = (m_after[0] - m_before[0]) / TICK
    cpu["everything else on the machine"] = busy - sum(cpu.values())
    window = seconds - 1.5
    return result, {k: v / window for k, v in cpu.items()}  # CPU cores used on average


def wireguard_run(plan: LabPlan, seconds: int) -> traffic.Throughput:
    a, b = plan.site("hq"), plan.site("cloud-a")
    return traffic.iperf3(
        b.netns,
        b.dataplane.wireguard.address,
        a.netns,
        f"{a.name} wg",
        f"{b.name} wg",
        seconds,
    )


# -- settings ----------------------------------------------------------------------------


def _vswitchd_restart(plan: LabPlan, config_changes: list[str]) -> None:
    registry = Registry(plan.state_dir)
    for site in plan.sites:
        switch.vsctl(site, "set", "Open_vSwitch", ".", *config_changes)
        pid = switch.pid_of(site, "ovs-vswitchd")
        if pid is not None:
            netns.terminate([pid], grace=5.0)
        switch.start(site, registry)


def tso(plan: LabPlan) -> None:
    _vswitchd_restart(plan, ["other_config:userspace-tso-enable=true"])
    for host in plan.hosts:
        for ns, dev in ((host.netns, names.HOST_IF), (plan.site(host.site).netns, host.port)):
            netns.run(ns, ["ethtool", "-K", dev, "tx", "on", "tso", "on", "gso", "on"])


def pin(plan: LabPlan, cpus: dict[tuple[str, str], str]) -> None:
    """taskset every thread of (site, program) to the CPU list given."""
    for site in plan.sites:
        for pid in netns.pids_in(site.netns):
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cpu = cpus.get((site.name, comm)) or cpus.get(("*", comm))
            if cpu is not None:
                subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)],
                               capture_output=True, check=True)  # fmt: skip


def afxdp(plan: LabPlan) -> None:
    for site in plan.sites:
        switch.vsctl(site, "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3",
                     "other_config:pmd-maxsleep=50")  # fmt: skip
        for host in plan.hosts_at(site.name):
            switch.vsctl(site, "set", "Interface", host.port, "type=afxdp",
                         "options:xdp-mode=generic")  # fmt: skip


def kernel_bridge(plan: LabPlan) -> None:
    from bridge.apply import guard_table

    for site in plan.sites:
        ports = [h.port for h in plan.hosts_at(site.name)]
        ports += [t.name for t in site.dataplane.tunnels()]
        for port in ports:
            switch.vsctl(site, "--if-exists", "del-port", site.bridge, port)
        # The switch-port guards drop at ingress, before a Linux bridge would see a frame.
        netns.run(site.netns, ["nft", "delete", "table", "netdev", guard_table(site.name)])
        netns.run(site.netns, ["ip", "link", "add", "kbr0", "type", "bridge"])
        for port in ports:
            netns.run(site.netns, ["ip", "link", "set", port, "master", "kbr0"])
        netns.run(site.netns, ["ip", "link", "set", "kbr0", "up"])


def apply_setting(name: str, plan: LabPlan) -> None:
    if name == "tso":
        tso(plan)
    elif name == "by-site":
        pin(plan, {("hq", "ovs-vswitchd"): "0", ("hq", "wireguard-go"): "0",
                   ("*", "ovs-vswitchd"): "1", ("*", "wireguard-go"): "1"})  # fmt: skip
    elif name == "by-role":
        pin(plan, {("*", "ovs-vswitchd"): "0", ("*", "wireguard-go"): "1"})
    elif name == "unpinned":
        pin(plan, {("*", "ovs-vswitchd"): "0,1", ("*", "wireguard-go"): "0,1"})
    elif name == "afxdp":
        afxdp(plan)
    elif name == "kernel-bridge":
        kernel_bridge(plan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", default=["baseline"], choices=SETTINGS)
    parser.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run")
    parser.add_argument("--runs", type=int, default=2, help="slice/wireguard pairs per setting")
    args = parser.parse_args()

    config, text = demo.built_in()
    lab_id = names.new_lab_id()
    results: dict[str, list[Run]] = {}
    try:
        plan = build.up(config, lab_id, f"bench {demo.BUILT_IN}", text)
        for setting in args.settings:
            apply_setting(setting, plan)
            if setting != "kernel-bridge":
                flows.wait_programmed(config, plan)
            runs = results[setting] = []
            for _ in range(args.runs):
                s, cpu = slice_run(plan, args.seconds)
                w = wireguard_run(plan, args.seconds)
                load = float(Path("/proc/loadavg").read_text().split()[0])
                runs.append(Run(s.bits_per_second / 1e6, s.retransmits,
                                w.bits_per_second / 1e6, w.retransmits, cpu, load))  # fmt: skip
                print(f"{setting}: slice {runs[-1].slice_mbps:.0f} Mbit/s "
                      f"({s.retransmits} retr), wireguard-go {runs[-1].wg_mbps:.0f} Mbit/s "
                      f"({w.retransmits} retr), load {load:.1f}", flush=True)  # fmt: skip
    finally:
        build.down(STATE_ROOT / lab_id)

    print(f"\niperf3 TCP hq -> cloud-a, {args.seconds} s runs, lab {lab_id}, 2 cores shared")
    for setting, runs in results.items():
        ratio = [r.slice_mbps / r.wg_mbps for r in runs if r.wg_mbps]
        print(
            f"  {setting:<9} slice {' '.join(f'{r.slice_mbps:.0f}' for r in runs)} Mbit/s "
            f"(retr {' '.join(str(r.slice_retransmits) for r in runs)}), "
            f"wireguard-go {' '.join(f'{r.wg_mbps:.0f}' for r in runs)} Mbit/s "
            f"(retr {' '.join(str(r.wg_retransmits) for r in runs)}), "
            f"ratio {' '.join(f'{x:.2f}' for x in ratio)}, "
            f"load {' '.join(f'{r.load:.1f}' for r in runs)}"
        )
    print("\nCPU during the slice runs (cores busy; ms of CPU per Mbit carried):")
    for setting, runs in results.items():
        last = runs[-1]
        print(f"  {setting} ({last.slice_mbps:.0f} Mbit/s):")
        for label, cores in sorted(last.cpu.items(), key=lambda kv: -kv[1]):
            if cores >= 0.01:
                per = 1000 * cores / last.slice_mbps if last.slice_mbps else 0.0
                print(f"    {label:<34} {cores:5.2f} cores  {per:6.2f} ms/Mbit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
