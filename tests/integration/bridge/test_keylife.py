"""Keys over their life on running sites (real wireguard-go, three sites, each running
from its own key directory): a rotation under a 1 ms probe, a revocation with the old key
still in the revoked site's hands, and `keys export`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import keylife, wireguard
from bridge.apply import apply_site
from bridge.keys import KeyStore
from tests.integration.bridge.sites import CONFIG, Lab, eventually, in_ns

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

HANDSHAKE_INITIATION = 148  # bytes (the WireGuard paper, section 5.4.2)


def deploy(lab: Lab, tmp_path: Path) -> dict[str, keylife.Deployed]:
    """Every site up from its own key directory, as a provider host would run it."""
    lab.keys.ensure_all(lab.config.sites)
    deployed = {
        site: keylife.Deployed(netns=ns, keys=tmp_path / "sites" / site, run_dir=lab.run_dir)
        for site, ns in lab.netns.items()
    }
    keylife.provision(lab.config, lab.keys, deployed)
    for site, where in deployed.items():
        apply_site(
            lab.plan(site), netns=where.netns, keys=KeyStore(where.keys), run_dir=where.run_dir
        )
    assert sorted(p.name for p in (tmp_path / "sites" / "cloud").iterdir()) == [
        "branch.pub",
        "cloud.key",
        "hq.pub",
    ]
    return deployed


def probe(ns: str, address: object, count: int) -> subprocess.Popen[str]:
    """`count` pings 1 ms apart, each answered or lost within 1 s."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "ping", "-n", "-i", "0.001", "-W", "1", "-c", str(count),
         str(address)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def lost(ping: subprocess.Popen[str]) -> int:
    out, _ = ping.communicate(timeout=60)
    found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert found, out
    return int(found.group(1)) - int(found.group(2))


def test_rotation_under_a_1ms_probe(lab: Lab, tmp_path: Path) -> None:
    deployed = deploy(lab, tmp_path)
    before = {site: lab.plan(site) for site in lab.netns}
    cloud = before["cloud"].wireguard.address
    eventually("ping hq -> cloud", lambda: lab.ping("hq", cloud))
    eventually("ping branch -> hq", lambda: lab.ping("branch", before["hq"].wireguard.address))

    ping = probe(lab.netns["hq"], cloud, 3000)
    assert ping.stdout is not None
    # Rotate once the probe is well under way (its 500th reply), not at a guessed time.
    for line in ping.stdout:
        if "icmp_seq=500 " in line:
            break
    change = keylife.rotate(lab.config, "hq", lab.keys, deployed, prefix=lab.prefix)
    lost_probes = lost(ping)
    print(f"\nrotation of hq under a 1 ms probe: {lost_probes} of 3000 probes lost")
    assert lost_probes <= 20, f"{lost_probes} probes lost in one rotation"

    old, new = change.old_public_key, change.new_public_key
    assert old == before["hq"].wireguard.public_key != new
    hq = wireguard.show(lab.netns["hq"], before["hq"].wireguard.name)
    assert hq.private_key == KeyStore(deployed["hq"].keys).private_key("hq")
    for site in ("branch", "cloud"):
        peers = wireguard.show(lab.netns[site], before[site].wireguard.name).peers
        assert new in peers and old not in peers
        assert (deployed[site].keys / "hq.pub").read_text().strip() == new
        # The new key completed a handshake with every peer.
        assert peers[new].latest_handshake > 0 or site == "branch"
    eventually("ping branch -> hq with the new key",
               lambda: lab.ping("branch", before["hq"].wireguard.address))  # fmt: skip
    # Nothing left to converge.
    for site, where in deployed.items():
        plan = lab.plan(site)
        again = apply_site(
            plan, netns=where.netns, keys=KeyStore(where.keys), run_dir=where.run_dir
        )
        assert again.changes == ()


def test_revoked_key_cannot_handshake_and_traffic_stops(lab: Lab, tmp_path: Path) -> None:
    deployed = deploy(lab, tmp_path)
    before = {site: lab.plan(site) for site in lab.netns}
    hq, cloud = before["hq"].wireguard.address, before["cloud"].wireguard.address
    eventually("ping hq -> cloud", lambda: lab.ping("hq", cloud))
    eventually("ping cloud -> branch",
               lambda: lab.ping("cloud", before["branch"].wireguard.address))  # fmt: skip
    revoked = before["cloud"].wireguard.public_key
    try:
        argv = [sys.executable, "-m", "overcast", "bridge", "keys", "revoke", "CONFIG", "cloud",
                "--keys", str(lab.keys.directory), "--prefix", lab.prefix, "--json",
                *(f"--at={s}={w.netns}:{w.keys}" for s, w in deployed.items())]  # fmt: skip
        config = tmp_path / "overcast.yaml"
        config.write_text(CONFIG)
        argv[argv.index("CONFIG")] = str(config)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

        # At once: not one more probe crosses, either way.
        assert not lab.ping("hq", cloud)
        assert not lab.ping("cloud", hq)
        for site in ("hq", "branch"):
            assert revoked not in wireguard.show(lab.netns[site], before[site].wireguard.name).peers
            assert not (deployed[site].keys / "cloud.pub").exists()
        assert (lab.keys.directory / "cloud.revoked").read_text().strip() == revoked
        assert not (lab.keys.directory / "cloud.key").exists()

        # The revoked site still holds its old key and tries again from scratch: its
        # handshake initiations go out, none is answered.
        site_keys = KeyStore(deployed["cloud"].keys)
        assert wireguard.show(lab.netns["cloud"], before["cloud"].wireguard.name).private_key == (
            site_keys.private_key("cloud")
        )
        name = before["cloud"].wireguard.name
        hq_key = before["hq"].wireguard.public_key
        in_ns(lab.netns["cloud"], "wg", "set", name, "peer", hq_key, "remove")
        apply_site(before["cloud"], netns=lab.netns["cloud"], keys=site_keys, run_dir=lab.run_dir)
        lab.ping("cloud", hq)

        def tried_twice() -> bool:
            peer = wireguard.show(lab.netns["cloud"], name).peers[hq_key]
            return peer.tx_bytes >= 2 * HANDSHAKE_INITIATION

        # wireguard-go retries after REKEY_TIMEOUT (5 s, the WireGuard paper, section 6.4).
        eventually("a second handshake initiation from the revoked key", tried_twice, 15)
        peer = wireguard.show(lab.netns["cloud"], name).peers[hq_key]
        assert (peer.latest_handshake, peer.rx_bytes) == (0, 0)
        assert not lab.ping("cloud", hq)
    finally:
        lab.keys.rotate("cloud")  # re-admitted, so the fixture can plan its teardown
