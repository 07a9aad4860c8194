"""First steps and scenarios on real labs: the ping `lab up` suggests works, the `stretch`
scenario (L2 and L3) passes twice in a row on the same lab id (so its teardown left nothing in the way),
`rotate` and `sso` pass and leave nothing, and Ctrl-C in the middle of `lab up` removes
everything the build had made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import netns

from lab import build, names
from lab import netns as lab_netns
from lab.plan import STATE_ROOT
from overcast.config import loads
from tests.conftest import require_binaries
from tests.integration.gateway.sso_peers import require_js
from tests.integration.lab.conftest import ROOT, interrupted_once, leftovers, overcast

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

STRETCH = ROOT / "lab" / "scenarios" / "stretch.yaml"
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "wireguard-go", "wg", "ping", "ethtool", "ss")


def _hint(stdout: str, prefix: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line


def test_up_suggests_a_ping_that_works_and_a_look_at_isolation(lab_id: str, tmp_path: Path) -> None:
    require_binaries(*DAEMONS)
    config = tmp_path / "overcast.yaml"
    config.write_text(STRETCH.read_text())
    up = overcast("lab", "up", str(config), "--id", lab_id, timeout=150)
    assert up.returncode == 0, up.stderr[-2000:]
    # "try: ip netns exec NS ping -c 3 ADDR   (hq/finance-1 -> branch/finance-1, ...)", and
    # the same between the routed hosts of the L3 segment apps.
    tries = [line for line in up.stdout.splitlines() if line.startswith("try: ")]
    assert len(tries) == 2 and "routed segment apps" in tries[1], up.stdout
    for line in tries:
        command = line.removeprefix("try: ").split("   (")[0]
        assert command.startswith("ip netns exec ") and " ping -c 3 " in command
        ping = subprocess.run(command.split(), capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "3 received" in ping.stdout
    # The isolation hint's ping fails, as it says it will.
    isolation = _hint(up.stdout, "isolation: ").split("`")[1]
    fails = subprocess.run(isolation.split(), capture_output=True, text=True, timeout=30)
    assert fails.returncode != 0, fails.stdout

    # The routed hosts `lab up` built: IPv6 across the routed segment too, and no way into
    # an L2 segment (their site routes only the segment's prefixes into WireGuard).
    plan = build.plan_of(loads(STRETCH.read_text()), lab_id)
    hq, branch = plan.routed_hosts
    assert branch.address6 is not None
    ping6 = ["ping", "-c", "3", "-i", "0.2", "-W", "2", str(branch.address6.ip)]
    assert "3 received" in lab_netns.run(hq.netns, ping6, check=False)
    for host in plan.hosts:
        out = lab_netns.run(
            hq.netns, ["ping", "-c", "2", "-i", "0.2", "-W", "1", str(host.address.ip)], check=False
        )
        assert " 0 received" in out, f"{hq.label} reached {host.label}: {out}"
    status = overcast("lab", "status", lab_id, "--json", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    (lab,) = json.loads(status.stdout)["labs"]
    routed = {h["host"]: h for h in lab["hosts"] if h["mode"] == "l3"}
    assert set(routed) == {"hq/apps-1", "branch/apps-1"}
    assert routed["hq/apps-1"]["alive"] and routed["hq/apps-1"]["gateway"] == "10.20.1.1"

    down = overcast("lab", "down", lab_id, timeout=150)
    assert down.returncode == 0, down.stderr
    assert leftovers(lab_id) == []


def test_stretch_passes_twice_in_a_row_and_leaves_nothing(lab_id: str) -> None:
    require_binaries(*DAEMONS, "iperf3")
    for run in (1, 2):
        scenario = overcast("lab", "scenario", "stretch", "--id", lab_id, "--json", timeout=240)
        assert scenario.returncode == 0, f"run {run}: {scenario.stdout}{scenario.stderr[-2000:]}"
        result = json.loads(scenario.stdout)
        assert result["ok"] and result["error"] is None and result["lab_id"] == lab_id
        checks = {c["name"]: c for c in result["checks"]}
        # Each L2 segment across the two sites, and the routed hosts both ways: ping (IPv4,
        # and IPv6 for the routed hosts) and TCP. Each pair of hosts of two L2 segments, and a
        # routed host to each L2 host at the other site: isolated.
        pings = [c for n, c in checks.items() if n.startswith("ping ")]
        tcp = [c for n, c in checks.items() if n.startswith("TCP ")]
        isolated = [c for n, c in checks.items() if n.startswith("isolation ")]
        assert len(pings) == 6 and len(tcp) == 4 and len(isolated) == 6
        assert "ping hq/apps-1 -> branch/apps-1" in checks
        assert "ping hq/apps-1 -> branch/apps-1 over IPv6" in checks
        assert all(c["figures"]["received"] == c["figures"]["sent"] == 5 for c in pings)
        assert all(c["figures"]["bits_per_second"] > 1e6 for c in tcp)
        assert all(c["figures"]["received"] == 0 < c["figures"]["sent"] for c in isolated)
        assert leftovers(lab_id) == [], f"run {run} left things behind"


def test_ctrl_c_in_the_middle_of_up_removes_the_lab(lab_id: str, tmp_path: Path) -> None:
    require_binaries(*DAEMONS)
    config = tmp_path / "overcast.yaml"
    config.write_text(STRETCH.read_text())
    # Interrupt it mid-build: once the first site's ovs-vswitchd is recorded, with the
    # controller running and namespaces made, and the second site still to come.
    code, err = interrupted_once(
        ["lab", "up", str(config), "--id", lab_id], lab_id, "ovs-vswitchd", timeout=120
    )
    assert code == 130, err[-2000:]
    assert "interrupted, removing everything it built" in err
    assert leftovers(lab_id) == []


def test_a_lab_whose_state_dir_is_gone_is_found_by_its_namespaces(lab_id: str) -> None:
    # What `lab down --all` does for namespaces no state dir accounts for (running --all
    # here would remove the labs of other test runs on this machine).
    require_binaries(*DAEMONS)
    text = STRETCH.read_text()
    plan = build.up(loads(text), lab_id, "test", text)
    shutil.rmtree(plan.state_dir)
    assert lab_id not in {p.name for p in build.lab_dirs()}
    assert lab_id in names.lab_ids_of(netns.listnetns())
    assert leftovers(lab_id), "nothing left to find: the test would prove nothing"
    build.down(STATE_ROOT / lab_id)
    assert leftovers(lab_id) == []


def test_rotate_keeps_traffic_flowing_and_leaves_nothing(lab_id: str) -> None:
    require_binaries(*DAEMONS)
    scenario = overcast("lab", "scenario", "rotate", "--id", lab_id, "--json", timeout=240)
    assert scenario.returncode == 0, f"{scenario.stdout}{scenario.stderr[-2000:]}"
    result = json.loads(scenario.stdout)
    assert result["ok"] and result["error"] is None and result["lab_id"] == lab_id
    checks = {c["name"]: c for c in result["checks"]}
    probes = checks["probes hq/finance-1 -> branch/finance-1 across the rotation"]["figures"]
    assert probes["answered_before"] > 0 and probes["answered_after"] > 0
    assert probes["gap_ms"] <= probes["max_gap_ms"] and 0 <= probes["lost"] < probes["sent"]
    keys = checks["hq runs on its new key"]["figures"]
    assert keys["old_public_key"] != keys["new_public_key"]
    for peer in ("branch", "cloud-a"):
        seen = checks[f"{peer} handshakes with hq's new key, old key gone"]["figures"]
        assert seen["handshake_age_s"] is not None and not seen["old_key_present"]
    tap = checks["nothing crossed hq's underlay in clear"]["figures"]
    # The tap saw the probes (both ways, inside WireGuard) and the new key's handshake.
    assert tap["in_clear"] == 0 and tap["wireguard"]["transport"] >= probes["sent"]
    assert tap["wireguard"]["initiation"] >= 1
    assert leftovers(lab_id) == []


def test_sso_interrupted_leaves_nothing_then_signs_one_user_in_and_refuses_the_other(
    lab_id: str,
) -> None:
    require_js("oidc-provider")
    # Ctrl-C once the provider, the app and the gateway all run: nothing is left.
    proc = subprocess.Popen(
        [sys.executable, "-m", "overcast", "lab", "scenario", "sso", "--id", lab_id],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "sso: gateway at" in line:
                break
        assert proc.poll() is None and leftovers(lab_id), "nothing running to interrupt"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert leftovers(lab_id) == []

    scenario = overcast("lab", "scenario", "sso", "--id", lab_id, "--json", timeout=180)
    assert scenario.returncode == 0, f"{scenario.stdout}{scenario.stderr[-2000:]}"
    result = json.loads(scenario.stdout)
    assert result["ok"] and result["error"] is None
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["alice signs in to crm"]["figures"]["status"] == 200
    identity = checks["crm verified alice's identity"]["figures"]
    assert (identity["sub"], identity["groups"], identity["aud"]) == ("alice", ["sales"], "crm")
    refused = checks["bob is refused"]
    assert refused["figures"]["status"] == 403
    # The reason the page shows is the decision line's.
    assert "no allow rule matched" in refused["figures"]["reason"]
    assert refused["figures"]["reason"] in refused["detail"]
    logged = checks["the gateway logged each decision"]["figures"]
    assert logged["refused"]["sub"] == "bob" and logged["refused"]["allowed"] is False
    assert logged["allowed"]["sub"] == "alice" and logged["allowed"]["app"] == "crm"
    assert checks["crm never saw bob"]["figures"]["users"] == ["alice"]
    assert leftovers(lab_id) == []


def test_failover_moves_traffic_and_returns_it_after_the_hold_down(lab_id: str) -> None:
    require_binaries(*DAEMONS, "iperf3", "nft")
    scenario = overcast("lab", "scenario", "failover", "--id", lab_id, "--json", timeout=300)
    assert scenario.returncode == 0, f"{scenario.stdout}{scenario.stderr[-2000:]}"
    result = json.loads(scenario.stdout)
    assert result["ok"] and result["error"] is None and result["lab_id"] == lab_id
    checks = {c["name"].split(":")[0]: c["figures"] for c in result["checks"]}
    failover, failback = checks["failover"], checks["failback"]
    assert 0 < failover["gap_ms"] <= failover["target_ms"] and failover["lost"] > 0
    assert (failover["underlay"], failover["backup"]) == ("isp-a", "isp-b")
    assert failback["gap_ms"] <= failback["target_ms"]
    returned = checks["failback after the hold-down"]
    assert returned["failback_after_s"] >= returned["hold_down_s"] - 0.5
    assert checks["traffic on isp-b during the fault"]["roles"] == {
        "isp-a": "down",
        "isp-b": "active",
    }
    assert checks["TCP hq/finance-1 -> branch/finance-1 through the failover"]["bits_per_second"]
    assert leftovers(lab_id) == []
