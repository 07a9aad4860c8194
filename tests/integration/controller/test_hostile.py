"""Hostile and confused switches against the real controller process (issue #17).

One controller (`overcast controller run`) in its own namespace programs a real userspace
OVS over a management veth. Clients on real sockets then send it every malformed message
of tests/openflow_samples.py, flood it with the two 72-byte messages that used to take it
down, and connect twice with one datapath id. Through all of it, the OVS stays programmed.
"""

from __future__ import annotations

import re
import sys
import threading
import time
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
    sh,
    unique_prefix,
    wait_for,
)
from tests.integration.controller.ofclient import SwitchClient
from tests.openflow_samples import (
    bad_variants,
    zero_length_flow_stats,
    zero_length_group_desc,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
"""
CTL_IP, SW_IP, OF_PORT, METRICS = "198.51.100.5", "198.51.100.6", 6653, "127.0.0.1:9311"
HQ_DPID, BRANCH_DPID = 0xAB01, 0xAB02
RSS_LIMIT = 200 * 1024 * 1024


@dataclass
class Rig:
    switch: OvsSwitch
    bridge: str
    ports: list[str]
    ctl: ControllerProcess

    def client(self, dpid: int = 0, ports: tuple[str, ...] = ()) -> SwitchClient:
        return _in_netns(self.ctl.netns, lambda: SwitchClient((CTL_IP, OF_PORT), dpid, ports))

    def metric(self, name: str, labels: str = "") -> float:
        text = sh(sys.executable, "-c", _SCRAPE, netns=self.ctl.netns)
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels or "{" in line else " ")) and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rss(self) -> int:
        status = Path(f"/proc/{self.ctl.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match, status
        return int(match.group(1)) * 1024

    def flows(self) -> str:
        return self.switch.ofctl("dump-flows", self.bridge)


_SCRAPE = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"


def _in_netns(netns: str, make: object) -> SwitchClient:
    """Run `make` with this thread inside `netns` (a socket keeps the namespace it was made in)."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, 0) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        return make()  # type: ignore[operator,no-any-return]
    finally:
        libc.setns(own, 0)
        os.close(own)
        os.close(target)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-ofctl")
    prefix = unique_prefix()
    namespaces = Namespaces()
    switch: OvsSwitch | None = None
    try:
        sw_ns, ctl_ns = namespaces.add(f"{prefix}-sw"), namespaces.add(f"{prefix}-ctl")
        switch = OvsSwitch(sw_ns)
        namespaces.veth(f"{prefix}m0", sw_ns, f"{prefix}m1", ctl_ns)
        sh("ip", "addr", "add", f"{SW_IP}/30", "dev", f"{prefix}m0", netns=sw_ns)
        sh("ip", "addr", "add", f"{CTL_IP}/30", "dev", f"{prefix}m1", netns=ctl_ns)
        bridge, ports = f"{prefix}br", [f"{prefix}p0", f"{prefix}p1"]
        with Ovsdb(switch.remote) as db:
            db.ensure_bridge(bridge, dpid=HQ_DPID)
            for name in ports:
                namespaces.veth(name, sw_ns, name + "x", sw_ns)
                db.ensure_port(bridge, name)
        fabric = Fabric(
            switches={
                "hq": SiteSwitch(
                    site="hq",
                    bridge=bridge,
                    dpid=HQ_DPID,
                    ports=tuple(
                        FabricPort(name=p, kind="access", segment="finance") for p in ports
                    ),
                ),
                "branch": SiteSwitch(site="branch", bridge="br-overcast", dpid=BRANCH_DPID),
            }
        )
        listen = f"{CTL_IP}:{OF_PORT}"
        workdir = tmp_path_factory.mktemp("hostile")
        with controller(ctl_ns, CONFIG, fabric, workdir, listen, "--metrics", METRICS) as ctl:
            with Ovsdb(switch.remote) as db:
                db.ensure_bridge(bridge, dpid=HQ_DPID, controllers=[f"tcp:{listen}"])
            ctl.wait_log("switch hq programmed (full)", "the controller to program hq")
            yield Rig(switch, bridge, ports, ctl)
            assert "Traceback" not in ctl.log.read_text()
    finally:
        if switch is not None:
            switch.close()
        namespaces.close()


def test_plain_tcp_on_a_network_address_warns(rig: Rig) -> None:
    assert "over plain TCP" in rig.ctl.log.read_text()
    assert "--tls-cert" in rig.ctl.log.read_text()


def test_plain_tcp_on_loopback_does_not_warn(rig: Rig, tmp_path: Path) -> None:
    fabric = Fabric()
    with controller(rig.ctl.netns, CONFIG, fabric, tmp_path, "127.0.0.1:6654") as other:
        assert "plain TCP" not in other.log.read_text()


def test_every_malformed_message_closes_its_connection_and_is_counted(rig: Rig) -> None:
    cases = [
        ("issue 17: flow stats of length 0", zero_length_flow_stats()),
        ("issue 17: group desc of length 0", zero_length_group_desc()),
        *bad_variants(),
    ]
    before = rig.metric("overcast_controller_malformed_messages_total")
    for name, data in cases:
        client = rig.client()
        try:
            client.hello(answer=False)  # no features reply, no datapath id: anyone can do this
            client.send(data)
            assert client.closed_by_controller(), f"{name}: the controller kept the connection"
        finally:
            client.close()
    after = rig.metric("overcast_controller_malformed_messages_total")
    assert after - before == len(cases)
    assert (
        rig.metric("overcast_controller_malformed_messages_total", 'message="MULTIPART_REPLY_FLOW"')
        >= 1
    )
    log = rig.ctl.log.read_text()
    assert "closing the OpenFlow connection from 198.51.100.5:" in log
    assert (
        "MULTIPART_REPLY_GROUP_DESC message (24 bytes): MULTIPART_REPLY GROUP_DESC entry 1" in log
    )
    # The real switch was never disturbed.
    assert 'switches_connected{site="hq"} 1.0' in sh(
        sys.executable, "-c", _SCRAPE, netns=rig.ctl.netns
    )


def test_a_flood_of_zero_lengths_neither_grows_memory_nor_stops_programming(rig: Rig) -> None:
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        # Bounded in count and time; stops by itself if the test fails.
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and sent[0] < 20000:
            for data in (zero_length_flow_stats(), zero_length_group_desc()):
                try:
                    client = rig.client()
                    client.hello(answer=False)
                    client.send(data)
                    client.closed_by_controller(2)
                    client.close()
                except OSError:
                    pass
                sent[0] += 1

    rss = [rig.rss()]
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sent[0] >= 200, "the flood to start", timeout=30)
        # While it goes on, the real switch's port moves and it is re-programmed.
        with Ovsdb(rig.switch.remote) as db:
            db.remove_port(rig.bridge, rig.ports[1])
            assert db.ensure_port(rig.bridge, rig.ports[1], ofport_request=42) == 42

        def reprogrammed() -> bool:
            rss.append(rig.rss())
            return "in_port=42" in rig.flows()

        wait_for(reprogrammed, "flows to port 42 during the flood", timeout=30)

        def flooded() -> bool:
            rss.append(rig.rss())
            return sent[0] >= 2000

        wait_for(flooded, "2,000 bad messages", timeout=60)
    finally:
        stop.set()
        thread.join(timeout=30)
    rss.append(rig.rss())
    print(f"flood: {sent[0]} bad messages, controller RSS max {max(rss) >> 20} MiB")
    assert max(rss) < RSS_LIMIT, f"controller RSS reached {max(rss) >> 20} MiB"
    assert rig.ctl.proc.poll() is None
    assert rig.metric("overcast_controller_malformed_messages_total") >= sent[0] - 5


def test_a_second_connection_with_the_same_datapath_id_replaces_the_first(rig: Rig) -> None:
    gauge = 'overcast_controller_switches_connected{site="branch"}'

    def connected() -> float:
        return rig.metric("overcast_controller_switches_connected", 'site="branch"')

    first = rig.client(BRANCH_DPID)
    second = None
    try:
        first.handshake()
        wait_for(lambda: connected() == 1, f"{gauge} to be 1")
        second = rig.client(BRANCH_DPID)
        second.handshake()  # programmed: the newest connection is served
        assert first.closed_by_controller(), "the older connection was left open"
        assert connected() == 1
        second.close()
        wait_for(lambda: connected() == 0, f"{gauge} to return to 0 after both left")
        time.sleep(0.5)  # nothing later may push it below zero
        assert connected() == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    log = rig.ctl.log.read_text()
    assert f"switch dpid {BRANCH_DPID:#x} connected again from" in log
    assert "replaced by a newer connection" in log
