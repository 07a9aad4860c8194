"""The OpenFlow channel over mutual TLS: a switch with a certificate from another CA is
refused; the same switch with one from ours is programmed and forwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.ovsdb import Ovsdb
from overcast.fabric import Fabric, FabricPort, SiteSwitch
from tests.conftest import require_binaries
from tests.integration.controller.netns import (
    Namespaces,
    OvsSwitch,
    controller,
    ping,
    sh,
    wait_for,
)
from tests.integration.controller.pki import Authority

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

CONFIG = """
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
"""
CTL_IP, SW_IP = "198.51.100.1", "198.51.100.2"
MACS = ("02:00:00:00:01:01", "02:00:00:00:01:02")


def test_only_a_switch_our_ca_signed_is_programmed(
    switch: OvsSwitch, namespaces: Namespaces, prefix: str, tmp_path: Path
) -> None:
    require_binaries("ethtool", "ping")
    ours, rogue = Authority(tmp_path, "ours"), Authority(tmp_path, "rogue")
    ctl_id, good, bad = ours.issue("controller"), ours.issue("hq"), rogue.issue("hq")

    ctl_ns = namespaces.add(f"{prefix}-ctl")
    namespaces.veth(f"{prefix}m0", switch.netns, f"{prefix}m1", ctl_ns)
    sh("ip", "addr", "add", f"{SW_IP}/30", "dev", f"{prefix}m0", netns=switch.netns)
    sh("ip", "addr", "add", f"{CTL_IP}/30", "dev", f"{prefix}m1", netns=ctl_ns)
    bridge, hosts, ports = f"{prefix}br", [], []
    with Ovsdb(switch.remote) as db:
        db.ensure_ssl(bad.key, bad.cert, ours.cert)
        db.ensure_bridge(bridge, dpid=1)
        for i, mac in enumerate(MACS):
            port = f"{prefix}p{i}"
            hosts.append(
                namespaces.host(f"{prefix}-h{i}", switch.netns, port, mac, f"192.0.2.{11 + i}/24")
            )
            db.ensure_port(bridge, port)
            ports.append(FabricPort(name=port, kind="access", segment="finance", macs=(mac,)))
    fabric = Fabric(
        switches={"hq": SiteSwitch(site="hq", bridge=bridge, dpid=1, ports=tuple(ports))}
    )
    tls = ("--tls-cert", ctl_id.cert, "--tls-key", ctl_id.key, "--tls-ca", ours.cert)
    target = f"ssl:{CTL_IP}:6653"
    with controller(ctl_ns, CONFIG, fabric, tmp_path, f"{CTL_IP}:6653", *tls) as ctl:
        assert "mutual TLS" in ctl.log.read_text()
        switch_log = switch.rundir / "ovs-vswitchd.log"
        with Ovsdb(switch.remote) as db:
            db.ensure_bridge(bridge, dpid=1, controllers=[target])
        # The controller ends the handshake: the switch reads its "unknown ca" alert, or
        # (TLS 1.3 timing) only the reset that follows it.
        wait_for(lambda: f"{target}: connection dropped" in switch_log.read_text(), "a refusal")
        assert "connected" not in ctl.log.read_text()
        with Ovsdb(switch.remote) as db:
            db.ensure_ssl(good.key, good.cert, ours.cert)
            # A new controller entry connects at once instead of after OVS's backoff.
            db.ensure_bridge(bridge, dpid=1)
            db.ensure_bridge(bridge, dpid=1, controllers=[target])
        ctl.wait_log("programmed (full)", "the switch with our certificate to be programmed")
        assert ping(hosts[0], "192.0.2.12")
    with Ovsdb(switch.remote) as db:
        db.remove_ssl()
        db.remove_ssl()
    assert sh("ovs-vsctl", f"--db={switch.remote}", "get-ssl").strip() == ""
