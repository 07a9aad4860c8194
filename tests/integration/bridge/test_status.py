"""`bridge status` per tunnel and the Prometheus metrics of `bridge up --watch`, scraped
from the real long-running process, against real wireguard-go in throwaway namespaces."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.apply import apply_site
from overcast import exitcodes
from overcast.cli import main
from tests.integration.bridge.sites import CONFIG, Lab, eventually

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serving(url: str) -> bool:
    try:
        scrape(url)
    except urllib.error.URLError:
        return False
    return True


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric sample name, peer) -> value, for the tunnel metrics."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, s.labels["peer"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("overcast_bridge_tunnel_")
    }


def test_status_table_and_metrics_from_up_watch(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    lab.keys.ensure_all(lab.config.sites)
    for site in ("branch", "cloud"):
        apply_site(lab.plan(site), netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
    port = free_port()
    common = ["--site", "hq", "--keys", str(lab.keys.directory), "--prefix", lab.prefix,
              "--netns", lab.netns["hq"]]  # fmt: skip
    watch = subprocess.Popen(
        [sys.executable, "-m", "overcast", "bridge", "up", str(config), *common,
         "--run-dir", str(lab.run_dir), "--watch", "--interval", "1",
         "--metrics", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        hq = lab.plan("hq")
        cloud = lab.plan("cloud").wireguard.address

        def reachable() -> bool:
            return watch.poll() is None and lab.ping("hq", cloud)

        eventually("hq up under the watcher", reachable, 30)
        eventually("the watcher to serve metrics", lambda: serving(url))
        eventually("both tunnels up in the metrics", lambda: all(
            scrape(url).get(("overcast_bridge_tunnel_up", p)) == 1 for p in ("branch", "cloud")
        ))  # fmt: skip
        assert lab.ping("hq", cloud, "-c", "3", "-i", "0.2", "-s", "1000")
        metrics = scrape(url)
        assert main(["bridge", "status", str(config), *common, "--json"]) == exitcodes.OK
        status = {p["site"]: p for p in json.loads(capsys.readouterr().out)["peers"]}
        assert main(["bridge", "status", str(config), *common]) == exitcodes.OK
        table = capsys.readouterr().out
        for peer in ("branch", "cloud"):
            row = status[peer]
            assert row["backend"] in ("kernel", "wireguard-go")
            assert row["underlay"] == "underlay" and row["interface"] == hq.wireguard.name
            assert row["endpoint"] == next(p.endpoint for p in hq.wireguard.peers if p.site == peer)
            assert (row["mtu"], row["inner_mtu"], row["up"]) == (1440, 1390, True)
            assert 0 <= row["handshake_age_s"] < 180
            assert metrics[("overcast_bridge_tunnel_mtu_bytes", peer)] == 1440
            assert metrics[("overcast_bridge_tunnel_inner_mtu_bytes", peer)] == 1390
            assert metrics[("overcast_bridge_tunnel_handshake_age_seconds", peer)] < 180
            assert metrics[("overcast_bridge_tunnel_info", peer)] == 1
            assert f"{peer:<10} underlay" in table
        # The ping's bytes are in the counters, and they agree with status (read later).
        sent = metrics[("overcast_bridge_tunnel_transmit_bytes_total", "cloud")]
        assert sent > 3 * 1000
        assert status["cloud"]["tx_bytes"] >= sent
        assert (
            status["cloud"]["rx_bytes"]
            >= metrics[("overcast_bridge_tunnel_receive_bytes_total", "cloud")]
            > 3 * 1000
        )
        assert "wireguard-go" in table or "kernel" in table

        # The watcher converges again: a tunnel taken away comes back by itself.
        if status["cloud"]["backend"] == "wireguard-go":
            subprocess.run(["ip", "-n", lab.netns["hq"], "link", "del", hq.wireguard.name],
                           check=True)  # fmt: skip
            eventually("the watcher to rebuild the tunnel", reachable, 30)
    finally:
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=20)
    assert watch.returncode == 0, err
    assert f"metrics on {url}" in out
