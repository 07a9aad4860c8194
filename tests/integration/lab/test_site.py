"""A real lab: per-site OVS daemons in namespaces, hosts on veths, underlay, teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import build, netns, switch
from lab.plan import STATE_ROOT
from lab.registry import REGISTRY_FILE, Registry
from overcast.config import loads
from tests.conftest import require_binaries
from tests.integration.lab.conftest import leftovers, overcast

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2, underlay_mtu: 1400}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
  apps:
    mode: l3
    prefixes: [10.20.0.0/16, "2001:db8:20::/48"]
    sites: [hq, branch]
    announce: {hq: [10.20.1.0/24, "2001:db8:20:1::/64"], branch: [10.20.2.0/24]}
lab: {hosts_per_segment: 2}
"""


@pytest.fixture(autouse=True)
def _binaries() -> None:
    require_binaries(
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovsdb-tool",
        "ethtool",
        "ping",
        "ss",
        "wireguard-go",
        "wg",
    )


def test_sites_run_their_own_ovs_and_hosts_are_wired(lab_id: str) -> None:
    plan = build.up(loads(CONFIG), lab_id, "test", CONFIG)

    for site in plan.sites:
        # Each site's daemons run inside that site's namespace, and nowhere else.
        for daemon in switch.DAEMONS:
            pid = switch.pid_of(site, daemon)
            assert pid is not None, f"{daemon} not running at {site.name}"
            assert pid in netns.pids_in(site.netns)
        assert switch.vsctl(site, "get", "Bridge", site.bridge, "datapath_type") == "netdev"
        assert switch.vsctl(site, "get", "Bridge", site.bridge, "fail_mode") == "secure"
        ports = set(switch.vsctl(site, "list-ports", site.bridge).split())
        tunnels = {t.name for t in site.dataplane.tunnels()}
        assert ports == {h.port for h in plan.hosts_at(site.name)} | tunnels
        assert len(tunnels) == 1  # one peer site, one segment
        # ovs-vswitchd really opened the ports (no error in the Interface table).
        for port in ports:
            assert switch.vsctl(site, "get", "Interface", port, "error") in ("[]", "")
            assert switch.vsctl(site, "get", "Interface", port, "ofport") not in ("-1", "[]")

    for host in plan.hosts:
        features = netns.run(host.netns, ["ethtool", "-k", "eth0"])
        assert "tx-checksumming: off" in features
        mtu = netns.run(host.netns, ["cat", "/sys/class/net/eth0/mtu"]).strip()
        # bridge plan: narrowest underlay 1400 - 60 WireGuard - 50 VXLAN
        assert mtu == "1290"
        side = netns.run(plan.site(host.site).netns, ["ethtool", "-k", host.port])
        assert "tx-checksumming: off" in side

    # Underlay: sites reach each other's underlay addresses; the management network
    # reaches the controller's namespace.
    hq, branch = plan.sites
    netns.run(hq.netns, ["ping", "-c1", "-W2", str(branch.underlay)])
    netns.run(branch.netns, ["ping", "-c1", "-W2", str(plan.controller.ip)])
    assert netns.run(branch.netns, ["cat", "/sys/class/net/wan/mtu"]).strip() == "1400"

    # Routed hosts: on a LAN behind their site (not a switch port, see above), at 1500, the
    # site their gateway; IPv6 where the site announces an IPv6 prefix.
    for routed in plan.routed_hosts:
        site_ns = plan.site(routed.site).netns
        assert netns.run(routed.netns, ["cat", "/sys/class/net/eth0/mtu"]).strip() == "1500"
        assert str(routed.gateway) in netns.run(site_ns, ["ip", "-br", "addr", "show", routed.port])
        default = netns.run(routed.netns, ["ip", "route", "show", "default"])
        assert f"via {routed.gateway.ip}" in default
    hq_lan, branch_lan = plan.routed_hosts
    assert hq_lan.gateway6 is not None and branch_lan.address6 is None
    default6 = netns.run(hq_lan.netns, ["ip", "-6", "route", "show", "default"])
    assert f"via {hq_lan.gateway6.ip}" in default6
    assert hq_lan.netns in build.state_of(plan.state_dir).namespaces  # in the registry

    # No fabric file: the controller reads each host port's segment and MAC from OVSDB.
    assert not list(plan.state_dir.glob("*fabric*"))
    with switch.ovsdb(hq) as db:
        host = plan.hosts_at("hq")[0]
        tags = db.external_ids(host.port)
        assert (tags["overcast-segment"], tags["attached-mac"]) == (host.segment, host.mac)

    # Up again: nothing new is created and the daemons are the same processes.
    before = (
        Registry(plan.state_dir).entries(),
        [switch.pid_of(s, "ovs-vswitchd") for s in plan.sites],
    )
    build.up(loads(CONFIG), lab_id, "test", CONFIG)
    after = (
        Registry(plan.state_dir).entries(),
        [switch.pid_of(s, "ovs-vswitchd") for s in plan.sites],
    )
    assert before == after
    assert build.state_of(plan.state_dir).healthy

    build.down(plan.state_dir)
    assert leftovers(lab_id) == []


def test_up_with_other_content_under_the_same_id_is_refused(lab_id: str) -> None:
    build.up(loads(CONFIG), lab_id, "test", CONFIG)
    with pytest.raises(build.LabConflict, match=f"overcast lab down {lab_id}"):
        build.up(loads(CONFIG), lab_id, "test", CONFIG + "\n# changed\n")


def test_down_cleans_up_after_the_lab_process_is_killed(lab_id: str, tmp_path: Path) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[3])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "overcast", "lab", "up", str(config), "--id", lab_id],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it mid-build: once the first site's ovs-vswitchd is recorded.
        registry = Registry(STATE_ROOT / lab_id)
        deadline = time.monotonic() + 60
        while not any(e.program == "ovs-vswitchd" for e in registry.entries()):
            assert proc.poll() is None, "lab up finished before it could be killed"
            assert time.monotonic() < deadline, "lab up made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert leftovers(lab_id), "the killed lab left nothing to clean up: the test proves nothing"
    down = overcast("lab", "down", lab_id, timeout=150)
    assert down.returncode == 0, down.stderr
    assert f"lab {lab_id} removed" in down.stdout
    assert leftovers(lab_id) == []


def test_down_finds_the_lab_by_name_when_the_registry_is_lost(lab_id: str) -> None:
    plan = build.up(loads(CONFIG), lab_id, "test", CONFIG)
    (plan.state_dir / REGISTRY_FILE).unlink()
    assert leftovers(lab_id)
    build.down(plan.state_dir)
    assert leftovers(lab_id) == []
