"""The first end-to-end slice: the built-in demo lab (two enterprise sites, one provider
site, one L2 segment stretched across all three with VXLAN inside wireguard-go), forwarded
only by our controller. Built and checked through the real CLI, then torn down to nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.pipeline import COOKIE_BASE
from lab import build, demo, switch
from tests.conftest import require_binaries
from tests.integration.lab.conftest import leftovers, overcast

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def test_demo_carries_ping_and_tcp_between_sites_and_leaves_nothing(lab_id: str) -> None:
    require_binaries(
        "ovsdb-server", "ovs-vswitchd", "wireguard-go", "wg", "iperf3", "ping", "ethtool", "ss"
    )
    run = overcast("lab", "demo", "--id", lab_id, "--keep", "--json", "--seconds", "1", timeout=150)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["ok"] and report["lab_id"] == lab_id
    # hq, branch and cloud-a: every pair of sites, both ping and TCP.
    assert len(report["pings"]) == 3
    assert all(p["received"] == p["sent"] == 5 for p in report["pings"])
    assert len(report["throughput"]) == 3
    assert all(t["bits_per_second"] > 1e6 for t in report["throughput"])

    # Forwarding comes only from our controller: every flow carries its cookie, none uses
    # NORMAL, and the tunnels really are wireguard-go (no kernel module here).
    config, _ = demo.built_in()
    plan = build.plan_of(config, lab_id)
    for site in plan.sites:
        dump = switch.ofctl(site, "dump-flows")
        entries = [line for line in dump.splitlines() if "actions=" in line]
        assert entries, f"no flows at {site.name}"
        for line in entries:
            assert "NORMAL" not in line, line
            cookie = int(line.split("cookie=")[1].split(",")[0], 16)
            assert cookie & ~0xFFFFFF == COOKIE_BASE, line
        ports = set(switch.vsctl(site, "list-ports", site.bridge).split())
        assert {t.name for t in site.dataplane.tunnels()} <= ports
        assert Path(f"/var/run/wireguard/{site.dataplane.wireguard.name}.sock").exists()

    status = overcast("lab", "status", lab_id, "--json", timeout=150)
    assert status.returncode == 0, status.stdout + status.stderr
    (lab,) = json.loads(status.stdout)["labs"]
    assert lab["healthy"] and [s["site"] for s in lab["switches"]] == ["hq", "branch", "cloud-a"]
    assert all(s["connected"] and s["programmed"] for s in lab["switches"])

    down = overcast("lab", "down", lab_id, timeout=150)
    assert down.returncode == 0, down.stderr
    assert leftovers(lab_id) == []
