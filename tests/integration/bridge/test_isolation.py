"""Two routed (L3) segments on the same two sites: a host reaches its own segment's host at
the other site through WireGuard, and is refused (ICMP administratively prohibited, at
once) on the way to the other segment's hosts, at its own site and across the tunnel.
Real wireguard-go and nftables; no switch is needed for routed segments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge import isolation
from bridge.apply import apply_site, remove_site
from tests.conftest import require_binaries
from tests.integration.bridge.sites import Lab, eventually, in_ns, sh
from tests.unit.bridge.test_isolation import ROUTED

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

CONFIG = f"""\
sites:
  hq:     {{role: enterprise, underlay: 192.0.2.1}}
  branch: {{role: enterprise, underlay: 192.0.2.2}}
segments:
{ROUTED}"""
LAN = {"hq": 1, "branch": 2}


@pytest.fixture
def hosts(lab: Lab) -> Iterator[dict[tuple[str, str], str]]:
    """(site, segment) -> a host namespace on the site's LAN of that segment."""
    require_binaries("nft")
    made: dict[tuple[str, str], str] = {}
    try:
        for site, ns in lab.netns.items():
            for seg, first in (("apps", 20), ("db", 30)):
                made[site, seg] = h = f"{ns}-{seg}"
                sh("ip", "netns", "add", h)
                sh("ip", "link", "add", f"lan-{seg}", "netns", ns, "type", "veth",
                   "peer", "name", "eth0", "netns", h)  # fmt: skip
                lan = f"10.{first}.{LAN[site]}"
                for where, dev, last in ((ns, f"lan-{seg}", 1), (h, "eth0", 10)):
                    in_ns(where, "ip", "addr", "add", f"{lan}.{last}/24", "dev", dev)
                    in_ns(where, "ip", "link", "set", dev, "up")
                in_ns(h, "ip", "route", "add", "default", "via", f"{lan}.1")
        yield made
    finally:
        for h in made.values():
            sh("ip", "netns", "del", h, check=False)


def ping(ns: str, address: str) -> tuple[bool, str]:
    run = in_ns(ns, "ping", "-n", "-c", "1", "-W", "2", address, check=False)
    return run.returncode == 0, run.stdout


@pytest.mark.parametrize("lab", [CONFIG], indirect=True)
def test_routed_segments_are_kept_apart(lab: Lab, hosts: dict[tuple[str, str], str]) -> None:
    plans = {site: lab.plan(site) for site in lab.netns}
    for site, plan in plans.items():
        apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
    # Within a segment, across the tunnel.
    eventually("apps hq -> branch", lambda: ping(hosts["hq", "apps"], "10.20.2.10")[0])
    assert ping(hosts["branch", "db"], "10.30.1.10")[0]
    # Between segments: across the tunnel, and at one site.
    for source, target in (
        (hosts["hq", "apps"], "10.30.2.10"),
        (hosts["hq", "apps"], "10.30.1.10"),
        (hosts["branch", "db"], "10.20.2.10"),
    ):
        ok, out = ping(source, target)
        assert not ok and "Packet filtered" in out, (source, target, out)
    table = in_ns(
        lab.netns["hq"], "nft", "list", "table", "inet", isolation.isolation_table("hq")
    ).stdout
    assert "counter packets 0" not in table.split('comment "from apps"')[0].splitlines()[-1]
    # Re-applying changes nothing; removing the site removes the table.
    for site, plan in plans.items():
        again = apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
        assert again.changes == (), again.changes
    remove_site(plans["hq"], netns=lab.netns["hq"], run_dir=lab.run_dir)
    tables = in_ns(lab.netns["hq"], "nft", "list", "tables").stdout
    assert isolation.isolation_table("hq") not in tables
