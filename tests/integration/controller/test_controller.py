"""The controller process programs a real userspace OVS: hosts in one segment talk, others can't.

ctl ns: overcast controller run --listen 198.51.100.1:6653
  | veth (management)
sw ns:  ovsdb-server + ovs-vswitchd, bridge (fail_mode=secure), VXLAN port toward "branch"
  | veth        | veth        | veth
h1 ns       h2 ns       h3 ns
finance     finance     hr
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.ovsdb import Ovsdb
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from tests.conftest import require_binaries
from tests.integration.controller.netns import (
    ControllerProcess,
    Namespaces,
    OvsSwitch,
    controller,
    ping,
    sh,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
  hr:      {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}
"""
CTL_IP, SW_IP, OF_PORT, METRICS_PORT = "198.51.100.1", "198.51.100.2", 6653, 9310
HOSTS = {  # name: (segment, MAC, address); all in one IP subnet, so only L2 isolation separates them
    "h1": ("finance", "02:00:00:00:01:01", "192.0.2.11"),
    "h2": ("finance", "02:00:00:00:01:02", "192.0.2.12"),
    "h3": ("hr", "02:00:00:00:02:01", "192.0.2.13"),
}
DPID = 0x0C0FFEE


@dataclass
class Lab:
    switch: OvsSwitch
    bridge: str
    host_ns: dict[str, str]
    port: dict[str, str]  # host -> its switch-side port name
    ctl: ControllerProcess

    def ping(self, src: str, dst: str, count: int = 3) -> bool:
        return ping(self.host_ns[src], HOSTS[dst][2], count)


@pytest.fixture
def lab(switch: OvsSwitch, namespaces: Namespaces, prefix: str, tmp_path: Path) -> Iterator[Lab]:
    require_binaries("ethtool", "ping")
    ctl_ns = namespaces.add(f"{prefix}-ctl")
    # Management link: the switch reaches the controller over its own veth (no shared loopback).
    namespaces.veth(f"{prefix}m0", switch.netns, f"{prefix}m1", ctl_ns)
    sh("ip", "addr", "add", f"{SW_IP}/30", "dev", f"{prefix}m0", netns=switch.netns)
    sh("ip", "addr", "add", f"{CTL_IP}/30", "dev", f"{prefix}m1", netns=ctl_ns)

    bridge = f"{prefix}br"
    host_ns, port = {}, {}
    ports = []
    with Ovsdb(switch.remote) as db:
        db.ensure_bridge(bridge, dpid=DPID)
        for i, (host, (segment, mac, ip)) in enumerate(HOSTS.items()):
            port[host] = f"{prefix}p{i}"
            host_ns[host] = namespaces.host(
                f"{prefix}-{host}", switch.netns, port[host], mac, f"{ip}/24"
            )
            db.ensure_port(bridge, port[host])
            ports.append(FabricPort(name=port[host], kind="access", segment=segment, macs=(mac,)))
        # A tunnel toward a branch that does not exist here: it must get floods, not unicast.
        db.ensure_port(
            bridge, f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2", "key": "100"}
        )
    ports.append(FabricPort(name=f"{prefix}vx", kind="tunnel", segment="finance", peer="branch"))
    fabric = Fabric(
        switches={"hq": SiteSwitch(site="hq", bridge=bridge, dpid=DPID, ports=tuple(ports))}
    )
    listen, metrics = f"{CTL_IP}:{OF_PORT}", f"127.0.0.1:{METRICS_PORT}"
    extra = ("--metrics", metrics, "--audit", "1")
    with controller(ctl_ns, CONFIG, fabric, tmp_path, listen, *extra) as ctl:
        # Point the switch at the controller once it listens: the first try connects
        # (OVS backs off up to 8 s between failed tries).
        with Ovsdb(switch.remote) as db:
            db.ensure_bridge(bridge, dpid=DPID, controllers=[f"tcp:{CTL_IP}:{OF_PORT}"])
        ctl.wait_log("programmed (full)", "the controller to program the switch")
        yield Lab(switch, bridge, host_ns, port, ctl)


def test_hosts_in_a_segment_talk_and_other_segments_cannot(lab: Lab) -> None:
    assert lab.ping("h1", "h2"), lab.ctl.log.read_text()
    assert not lab.ping("h3", "h1", count=2)
    assert not lab.ping("h1", "h3", count=2)


def test_no_normal_action_and_the_pipeline_is_ours(lab: Lab) -> None:
    flows = lab.switch.ofctl("dump-flows", lab.bridge)
    groups = lab.switch.ofctl("dump-groups", lab.bridge)
    assert "normal" not in flows.lower() and "normal" not in groups.lower()
    assert "cookie=0x4f43" in flows
    assert "goto_table:2" in flows and "goto_table:3" in flows
    # The learn table's miss: a packet-in, marked as sent (snoop sends no second), on to acl.
    assert (
        "table=1, n_packets=0, n_bytes=0, priority=0 actions=CONTROLLER:128,"
        "write_metadata:0x2000000/0x2000000,goto_table:2" in flows
    )
    assert groups.count("type=all") == 4  # two flood groups (split horizon) per segment


def test_replugged_port_is_reprogrammed(lab: Lab) -> None:
    with Ovsdb(lab.switch.remote) as db:
        db.remove_port(lab.bridge, lab.port["h2"])
        wait_for(lambda: not lab.ping("h1", "h2", count=1), "h2 to be unreachable")
        assert db.ensure_port(lab.bridge, lab.port["h2"], ofport_request=42) == 42
    wait_for(lambda: "output:42" in lab.switch.ofctl("dump-flows", lab.bridge), "flows to port 42")
    assert lab.ping("h1", "h2"), lab.ctl.log.read_text()
    assert "programmed (diff)" in lab.ctl.log.read_text()


def test_metrics_and_clean_exit_on_sigterm(lab: Lab) -> None:
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    text = sh(sys.executable, "-c", script, netns=lab.ctl.netns)
    assert 'overcast_controller_switches_connected{site="hq"} 1.0' in text
    assert 'overcast_controller_programmings_total{kind="full",site="hq"} 1.0' in text
    lab.ctl.proc.send_signal(signal.SIGTERM)
    assert lab.ctl.proc.wait(timeout=10) == 0
    assert "Traceback" not in lab.ctl.log.read_text()


def test_sighup_reloads_the_fabric_and_keeps_the_old_one_if_bad(lab: Lab) -> None:
    fabric = Fabric.model_validate_json(lab.ctl.fabric.read_text())
    hq = fabric.switches["hq"]
    ports = tuple(
        p.model_copy(update={"segment": "finance"}) if p.name == lab.port["h3"] else p
        for p in hq.ports
    )
    lab.ctl.fabric.write_text("{broken")
    lab.ctl.proc.send_signal(signal.SIGHUP)
    lab.ctl.wait_log("reload failed", "the bad reload to be refused")
    assert lab.ping("h1", "h2")

    moved = Fabric(switches={"hq": hq.model_copy(update={"ports": ports})})
    lab.ctl.fabric.write_text(moved.model_dump_json())
    # Under load the switch may have been dropped for missed echoes and come back meanwhile,
    # so the re-plan may be a full programming rather than a diff: wait for either.
    done = lab.ctl.log.read_text().count("programmed (")
    lab.ctl.proc.send_signal(signal.SIGHUP)
    lab.ctl.wait_log("programmed (", "the re-plan after SIGHUP", count=done + 1, timeout=30)
    assert lab.ping("h1", "h3"), lab.ctl.log.read_text()


def test_a_host_cannot_send_from_a_mac_the_fabric_does_not_list(lab: Lab) -> None:
    h1 = lab.host_ns["h1"]
    sh("ip", "link", "set", "eth0", "address", "02:00:00:00:07:07", netns=h1)
    assert not lab.ping("h1", "h2", count=2)
    sh("ip", "link", "set", "eth0", "address", HOSTS["h1"][1], netns=h1)
    assert lab.ping("h1", "h2")


def test_a_restarted_controller_finds_the_switch_in_sync_and_removes_drift(
    lab: Lab, tmp_path: Path
) -> None:
    fabric = Fabric.model_validate_json(lab.ctl.fabric.read_text())
    lab.ctl.proc.send_signal(signal.SIGTERM)
    assert lab.ctl.proc.wait(timeout=10) == 0
    # Hand-made entries while no controller watches: one in our pipeline, one foreign.
    lab.switch.ofctl(
        "add-flow", lab.bridge, "table=1,priority=500,dl_dst=02:00:00:00:01:02,actions=drop"
    )
    listen = f"{CTL_IP}:{OF_PORT}"
    again = tmp_path / "again"
    again.mkdir()
    with controller(lab.ctl.netns, CONFIG, fabric, again, listen) as ctl:
        # The switch is backing off (up to 8 s) after losing the first controller.
        ctl.wait_log("programmed (full)", "the restarted controller to program", timeout=30)
        log = ctl.log.read_text()
        assert "sent 1 messages (full)" in log, log  # deleting the drop, nothing else
        assert "priority=500" not in lab.switch.ofctl("dump-flows", lab.bridge)
        assert lab.ping("h1", "h2")
    lab.switch.ofctl("add-flow", lab.bridge, "table=0,priority=500,actions=NORMAL")
    third = tmp_path / "third"
    third.mkdir()
    with controller(lab.ctl.netns, CONFIG, fabric, third, listen) as ctl:
        ctl.wait_log("programmed (full)", "the third controller to program", timeout=30)
        assert "not ours; wiping it" in ctl.log.read_text()
        assert "normal" not in lab.switch.ofctl("dump-flows", lab.bridge).lower()
        assert lab.ping("h1", "h2")


def test_the_audit_undoes_hand_made_changes(lab: Lab) -> None:
    flows = lab.switch.ofctl("dump-flows", lab.bridge)
    lab.switch.ofctl("add-flow", lab.bridge, "table=0,priority=900,actions=NORMAL")
    lab.switch.ofctl("del-flows", lab.bridge, "table=2")  # the flood table
    wait_for(
        lambda: _shape(lab.switch.ofctl("dump-flows", lab.bridge)) == _shape(flows),
        "the audit to restore the planned flows",
    )
    assert "drifted from its plan (entries that are not ours)" in lab.ctl.log.read_text()
    assert lab.ping("h1", "h2")


def _shape(dump: str) -> list[str]:
    """Flow entries without their counters and ages."""
    volatile = ("duration=", "n_packets=", "n_bytes=", "idle_age=", "hard_age=")
    return sorted(
        " ".join(f for f in line.split() if not f.startswith(volatile))
        for line in dump.splitlines()
        if "actions=" in line
    )
