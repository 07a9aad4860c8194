"""The demo end to end: the built-in lab (two enterprise sites, two cloud sites at two vendors,
one L2 segment stretched across all four with VXLAN inside wireguard-go, over two carriers),
forwarded only by our controller, run through the real CLI: every step of the story, then
the lab checked while kept, torn down to nothing, and the HTML report rendered by headless
Chromium to a PNG whose pixels and whose page's elements are checked."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.pipeline import COOKIE_BASE, LEARNED
from lab import build, demo, scenarios, switch
from lab.idp import JS, NODE
from tests.conftest import require, require_binaries
from tests.integration.gateway.sso_peers import require_js
from tests.integration.lab.conftest import leftovers, overcast

pytestmark = [pytest.mark.root, pytest.mark.timeout(1200)]

SITES = ["hq", "branch", "cloud-a", "cloud-b"]
PAIRS = 6  # every pair of the four sites


def test_demo_tells_the_story_reports_it_and_leaves_nothing(lab_id: str, tmp_path: Path) -> None:
    require_binaries(
        "ovsdb-server", "ovs-vswitchd", "wireguard-go", "wg", "iperf3", "ping", "ethtool", "ss"
    )
    require(
        os.access("/usr/bin/chromium", os.X_OK),
        "/usr/bin/chromium missing (apt-get install chromium)",
    )
    require_js("playwright-core")
    html = tmp_path / "report.html"
    run = overcast(
        *("lab", "demo", "--id", lab_id, "--keep", "--json", "--seconds", "1"),
        *("--report", str(html)),
        timeout=1000,  # a busy machine: the build alone took 130 s at load 24
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["ok"] and report["lab_id"] == lab_id and report["report"] == str(html)
    steps = {s["name"]: s for s in report["steps"]}
    # A step whose part is built runs and passes; one that is not is said not to have run.
    built = scenarios.registry()
    want = {"build": "passed", "traffic": "passed", "failover": "passed"}
    want |= {n: "passed" if n in built else "not run" for n in ("hijack", "sso")}
    assert {n: s["status"] for n, s in steps.items()} == want
    assert report["not_run"] == [n for n, s in want.items() if s == "not run"]
    # Every pair of sites, both ping and TCP.
    traffic = steps["traffic"]["checks"]
    pings = [c["figures"] for c in traffic if c["name"].startswith("ping")]
    rates = [c["figures"]["bits_per_second"] for c in traffic if c["name"].startswith("TCP")]
    assert len(pings) == PAIRS and all(p["received"] == p["sent"] == 5 for p in pings)
    assert len(rates) == PAIRS and all(r > 1e6 for r in rates)
    # The carrier failure was measured: a gap (or none) for the failover and the failback.
    gaps = [c["figures"] for c in steps["failover"]["checks"] if "gap_ms" in c["figures"]]
    assert len(gaps) == 2 and all(g["gap_ms"] <= g["target_ms"] for g in gaps)
    # Traffic moved to the other carrier and back, as the switches did it.
    assert report["paths_detour"] is not None
    assert any(e["text"].startswith("paths: isp-a -> isp-b") for e in report["events"])

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
            assert cookie & ~(LEARNED | 0xFFFFFF) == COOKIE_BASE, line  # ours: "OC", VNI
        ports = set(switch.vsctl(site, "list-ports", site.bridge).split())
        assert {t.name for t in site.dataplane.tunnels()} <= ports
        assert Path(f"/var/run/wireguard/{site.dataplane.wireguard.name}.sock").exists()

    status = overcast("lab", "status", lab_id, "--json", timeout=150)
    assert status.returncode == 0, status.stdout + status.stderr
    (lab,) = json.loads(status.stdout)["labs"]
    assert lab["healthy"] and [s["site"] for s in lab["switches"]] == SITES
    assert all(s["connected"] and s["programmed"] for s in lab["switches"])

    down = overcast("lab", "down", lab_id, timeout=150)
    assert down.returncode == 0, down.stderr
    assert leftovers(lab_id) == []

    page = render(html, tmp_path / "report.png")
    assert page["external"] == []  # self-contained: it asked for nothing but itself
    assert page["verdict"] == {"text": "PASS", "ok": "true"}
    assert [(s["name"], s["status"]) for s in page["steps"]] == list(want.items())
    assert [(b["step"], b["status"]) for b in page["bars"]] == list(want.items())
    assert sorted(page["sites"]) == sorted(SITES)
    assert sorted(page["providers"]) == ["vendor-a", "vendor-b"]
    assert page["segments"] == ["finance"] * 4
    tunnels = page["tunnels"]
    assert len(tunnels) == PAIRS * 2
    assert {t["underlay"] for t in tunnels} == {"isp-a", "isp-b"}
    assert {t["role"] for t in tunnels} <= {"active", "standby", "held", "down"}
    assert "active" in {t["role"] for t in tunnels}
    assert "active" in page["detour"] and page["moves"] >= 2
    # The guard and the gateway beside the bridge, with what their steps found.
    services = {s["step"]: s for s in page["services"]}
    assert {n: s["status"] for n, s in services.items()} == {n: want[n] for n in ("hijack", "sso")}
    if want["hijack"] == "passed":
        assert services["hijack"]["alerts"] == 1
        assert any("203.0.113.128/25 by AS64511" in line for line in services["hijack"]["lines"])
    if want["sso"] == "passed":
        assert any("alice signs in" in line for line in services["sso"]["lines"])
    assert page["checks"] and "false" not in page["checks"]
    # The PNG: the size the page has, not blank, the picture drawn where the page put it.
    png = page["png"]
    assert png_size(tmp_path / "report.png") == (png["width"], png["height"])
    topology = page["boxes"]["topology"]
    assert png["width"] >= 1000 and png["height"] >= topology["y"] + topology["height"]
    assert png["whole"]["colours"] > 200 and png["whole"]["ink"] > 0.03
    assert png["topology"]["colours"] > 100 and png["topology"]["ink"] > 0.03
    assert page["boxes"]["timeline"] and page["boxes"]["story"]


def render(html: Path, png: Path) -> dict[str, Any]:
    """The report in headless Chromium (tests/js/demo_report.mjs): what its page shows."""
    done = subprocess.run(
        [str(NODE), str(JS / "demo_report.mjs"), str(html), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    page: dict[str, Any] = json.loads(done.stdout)
    return page


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (RFC 2083 section 4.1.1)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is no PNG"
    width, height = struct.unpack("!II", data[16:24])
    return width, height
