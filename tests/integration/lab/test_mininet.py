"""Mininet, as a user runs it: `mn --custom lab/mininet_topos.py --topo
overcast,config=overcast.yaml --controller overcast` builds three sites (OVS, userspace
datapath, programmed by our controller) joined by WireGuard over two provider networks, with
two L2 segments and a routed one; Mininet's own `pingall` passes within each segment (across
the switches for L2, through each site's routes for the routed one) and fails between
segments, the provider networks carry nothing but WireGuard, and mn's exit leaves nothing
behind. One network for every check (CI time)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import UDP

from lab import build, flows, names, netns, switch
from lab.mininet_net import generated_config, host_name, shape_of
from lab.plan import STATE_ROOT, LabPlan
from overcast.config import OvercastConfig, loads
from tests.conftest import require_binaries
from tests.integration.lab.conftest import ROOT, leftovers
from tests.integration.lab.packets import Capture, not_wireguard

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

SITES, SEGMENTS, HOSTS, ROUTED = 3, 2, 1, 1
PING_TIMEOUT_S = 0.5  # pingall's per-ping wait: every ping between segments waits this long


class Mn:
    """`mn` with its CLI on a pipe: every line it prints is kept, commands are written."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # The CLI's prompt has no newline: it starts the next line.
            self.lines.append(line.removeprefix("mininet> ").rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> int:
        """The index of the first line from `since` on that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(since, len(self.lines)):
                if regex.search(self.lines[i]):
                    return i
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines[-30:])
        raise AssertionError(f"mn never printed {pattern!r} (exit {self.proc.poll()}):\n{tail}")

    def command(self, line: str) -> int:
        """Send a CLI command; the index its output starts at."""
        assert self.proc.stdin is not None
        start = len(self.lines)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return start


class Network:
    def __init__(self, mn: Mn, lab_id: str, config: OvercastConfig, plan: LabPlan) -> None:
        self.mn, self.lab_id, self.config, self.plan = mn, lab_id, config, plan


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    require_binaries("mn", "mnexec", "ovs-vswitchd", "ovsdb-server", "wireguard-go", "wg", "tc")
    lab_id = names.new_lab_id()
    # A config file, as an engineer brings theirs: the generated one with a routed segment.
    text = generated_config(SITES, SEGMENTS, HOSTS, routed=ROUTED)
    path = tmp_path_factory.mktemp("mininet") / "overcast.yaml"
    path.write_text(text)
    mn = Mn(
        [
            "mn",
            *("--custom", "lab/mininet_topos.py"),
            *("--topo", f"overcast,config={path},lab_id={lab_id}"),
            *("--controller", "overcast"),
        ]
    )
    try:
        mn.wait_for(r"\*\*\* Starting CLI", timeout=150)
        config = loads(text)
        yield Network(mn, lab_id, config, build.plan_of(config, lab_id))
    finally:
        if mn.proc.poll() is None:
            mn.proc.terminate()
            mn.proc.wait(timeout=30)
        build.down(STATE_ROOT / lab_id)


def test_sites_are_userspace_switches_our_controller_programs(net: Network) -> None:
    assert len(net.plan.sites) == SITES
    for site in net.plan.sites:
        assert switch.vsctl(site, "get", "Bridge", site.bridge, "datapath_type") == "netdev"
        assert switch.vsctl(site, "get", "Bridge", site.bridge, "fail_mode") == "secure"
        # WireGuard, one interface per provider network, inside the site, with its key.
        for wg in site.dataplane.wireguard_interfaces:
            assert netns.link_exists(site.netns, wg.name)
            key = netns.run(site.netns, ["wg", "show", wg.name, "public-key"]).strip()
            assert key == wg.public_key
    # Everything our pipeline plans is on every switch; every path's BFD session is up.
    assert [s for s in flows.states(net.config, net.plan) if not s.programmed] == []
    flows.wait_paths_up(net.plan, timeout=30)


def test_the_two_provider_networks_differ(net: Network) -> None:
    """Each provider's links have its bandwidth (HTB) and its delay (netem, or
    lab.wan_emulator on a kernel without it): pings between two sites' underlay addresses
    take at least the provider's round trip."""
    s1, s2 = net.plan.sites[:2]
    rtt = {}
    for k, underlay in enumerate(net.plan.underlays):
        shape = shape_of(k)
        classes = netns.run(s1.netns, ["tc", "class", "show", "dev", underlay.site_if])
        assert f"rate {shape.bw:g}Mbit" in classes
        out = netns.run(
            s1.netns,
            ["ping", "-c5", "-i0.2", "-W2", str(s2.underlays[underlay.name])],
            check=False,
        )
        match = re.search(r"= ([\d.]+)/", out)
        assert match, out
        rtt[underlay.name] = float(match.group(1))
        one_way_ms, _ = shape.path()
        assert rtt[underlay.name] >= 2 * one_way_ms, out
    assert rtt["isp-b"] > rtt["isp-a"]


def test_pingall_passes_within_segments_and_fails_between_over_wireguard_only(
    net: Network,
) -> None:
    points = {
        f"{u.name}/{s.name}": (u.netns, names.uplink_port(s.name))
        for u in net.plan.underlays
        for s in net.plan.sites
    }
    with Capture(points) as capture:
        start = net.mn.command(f"pingall {PING_TIMEOUT_S}")
        done = net.mn.wait_for(r"\*\*\* Results:", timeout=120, since=start)
    frames = capture.packets

    # Mininet's report: one line per host, the hosts it reached by name, X for the others.
    reached = {}
    for line in net.mn.lines[start:done]:
        if match := re.match(r"(\w+) -> (.*)$", line):
            reached[match.group(1)] = set(match.group(2).split()) - {"X"}
    segment = {host_name(h): h.segment for h in net.plan.hosts} | {
        host_name(h): h.segment for h in net.plan.routed_hosts
    }
    assert len(net.plan.routed_hosts) == SITES * ROUTED
    assert set(reached) == set(segment)
    for host, seen in reached.items():
        peers = {h for h, s in segment.items() if s == segment[host] and h != host}
        assert seen == peers, f"{host} reached {sorted(seen)}, its segment is {sorted(peers)}"
    summary = net.mn.lines[done]
    within = SITES * HOSTS * (SITES * HOSTS - 1) * SEGMENTS + SITES * (SITES - 1) * ROUTED
    assert f"({within}/{len(segment) * (len(segment) - 1)} received)" in summary

    # The hosts' frames crossed the provider networks inside WireGuard, and nothing else did.
    assert [why for f in frames if (why := not_wireguard(net.plan, f))] == []
    preferred = net.plan.underlays[0].name
    at_first_site = capture.at(f"{preferred}/{net.plan.sites[0].name}")
    transport = [f for f in at_first_site if UDP in f and bytes(f[UDP].payload)[:1] == b"\x04"]
    assert transport, "no WireGuard transport data on the preferred provider network"


def test_mn_exit_removes_everything_it_made(net: Network) -> None:
    net.mn.command("exit")
    assert net.mn.proc.wait(timeout=60) == 0
    # Only this lab's things, found by its id: other labs on the machine are not touched.
    assert netns.wait_until(lambda: not leftovers(net.lab_id), 30), leftovers(net.lab_id)
    assert not Path(STATE_ROOT / net.lab_id).exists()


def test_a_bad_config_stops_mn_with_the_reason_and_touches_nothing_else(tmp_path: Path) -> None:
    """mn answers an exception with Mininet's cleanup(), which kills every Mininet host and
    ping on the machine and deletes /tmp/*.log: a bad config must end mn with the reason,
    and no error may reach that cleanup."""
    require_binaries("mn")
    bad = tmp_path / "overcast.yaml"
    bad.write_text("sites: {hq: {role: enterprise, underlay: 300.0.0.1}}\n")
    marker = names.new_lab_id()
    canary_log = Path("/tmp") / f"{marker}.log"  # what Mininet's cleanup would delete
    canary_log.touch()
    canary = subprocess.Popen(["bash", "-c", f"exec -a mininet:{marker} sleep 60"])
    try:
        run = subprocess.run(
            ["mn", "--custom", "lab/mininet_topos.py", "--topo", f"overcast,config={bad}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = run.stdout + run.stderr
        assert run.returncode != 0
        assert f"1 problem(s) in {bad}" in out and "is not an IP address" in out, out
        assert "Cleaning up" not in out, out
        assert canary.poll() is None and canary_log.exists()
    finally:
        canary.kill()
        canary.wait()
        canary_log.unlink(missing_ok=True)
