"""The BMP listener against a real gobgpd exporting BMP (`bmp-servers`), with a real bird2
as gobgpd's BGP peer announcing documentation prefixes from a 4-byte private ASN.

  bird2 (AS4200000001, 192.0.2.1) --BGP--> gobgpd (AS4200000002, 192.0.2.2) --BMP--> us (192.0.2.10)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bgp_guard.feeds.bmp import BmpListener
from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import (
    GOBGP_LARGE_COMMUNITY,
    collect,
    daemon,
    gobgp_announce,
    ns_run,
    peer_down,
    run_in_netns,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

US, BIRD, GOBGP = "192.0.2.10", "192.0.2.1", "192.0.2.2"
BMP_PORT = 11019

GOBGPD_CONF = f"""
[global.config]
  as = 4200000002
  router-id = "{GOBGP}"
  port = 179
  local-address-list = ["{GOBGP}"]
[[bmp-servers]]
  [bmp-servers.config]
    address = "{US}"
    port = {BMP_PORT}
    route-monitoring-policy = "pre-policy"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{BIRD}"
    peer-as = 4200000001
  [neighbors.transport.config]
    local-address = "{GOBGP}"
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"""

BIRD_CONF = f"""
router id {BIRD};
log stderr all;
protocol device {{}}
protocol static s4 {{ ipv4; route 198.51.100.0/24 blackhole; }}
protocol static s6 {{ ipv6; route 2001:db8:1::/48 blackhole; }}
protocol bgp upstream {{
  local {BIRD} as 4200000001;
  neighbor {GOBGP} as 4200000002;
  multihop; strict bind; hold time 9;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import none; export all; }};
  ipv6 {{ import none; export all; next hop address 2001:db8::1; }};
}}
"""


def test_gobgpd_bmp_export(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp", "bird", "birdc")
    (tmp_path / "gobgpd.toml").write_text(GOBGPD_CONF)
    (tmp_path / "bird.conf").write_text(BIRD_CONF)
    ctl = str(tmp_path / "bird.ctl")

    async def scenario() -> None:
        listener = BmpListener()
        await listener.listen(US, BMP_PORT)
        gobgpd = [
            "gobgpd",
            "-f",
            str(tmp_path / "gobgpd.toml"),
            "--api-hosts",
            f"{GOBGP}:50051",
            "--pprof-disable",
        ]
        bird = ["bird", "-f", "-c", str(tmp_path / "bird.conf"), "-s", ctl]
        try:
            with (
                daemon(netns, gobgpd, tmp_path / "gobgpd.log"),
                daemon(netns, bird, tmp_path / "bird.log") as bird_proc,
            ):
                got = await collect(
                    listener, {("198.51.100.0/24", True), ("2001:db8:1::/48", True)}
                )
                v4, v6 = got[("198.51.100.0/24", True)], got[("2001:db8:1::/48", True)]
                # Attributed to the monitored peer (bird), not to the router (gobgpd).
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (
                    BIRD,
                    4200000001,
                    (4200000001,),
                )
                assert v4.next_hop == BIRD and v4.source.startswith("bmp:")
                assert (v6.peer_ip, v6.as_path, v6.next_hop) == (
                    BIRD,
                    (4200000001,),
                    "2001:db8::1",
                )
                ns_run(netns, "birdc", "-s", ctl, "disable", "s4")
                await collect(listener, {("198.51.100.0/24", False)})
                # Peer Down: what bird still announced is gone; the guard withdraws it.
                bird_proc.terminate()
                down = await peer_down(listener, BIRD)
                assert down.peer_asn == 4200000001 and down.source.startswith("bmp:")
                assert listener.stats.peer_downs == 1
            assert listener.stats.errors == 0
            assert listener.stats.records >= 4  # initiation, peer up, route monitoring, peer down
        finally:
            await listener.close()

    run_in_netns(netns, scenario)


def test_gobgpd_loc_rib_routes_from_the_cli(netns: str, tmp_path: Path) -> None:
    """Loc-RIB monitoring (RFC 9069): routes injected with `gobgp global rib add` arrive."""
    require_binaries("gobgpd", "gobgp")
    conf = GOBGPD_CONF.replace('"pre-policy"', '"local-rib"').split("[[neighbors]]")[0]
    (tmp_path / "gobgpd.toml").write_text(conf)
    api = ["gobgp", "-u", GOBGP, "-p", "50051"]

    async def scenario() -> None:
        listener = BmpListener()
        await listener.listen(US, BMP_PORT)
        gobgpd = [
            "gobgpd",
            "-f",
            str(tmp_path / "gobgpd.toml"),
            "--api-hosts",
            f"{GOBGP}:50051",
            "--pprof-disable",
        ]
        try:
            with daemon(netns, gobgpd, tmp_path / "gobgpd.log"):
                v4, v6 = await gobgp_announce(netns, api, listener)
                # Locally originated: empty AS path; the router (its BGP identifier) is the peer.
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (GOBGP, 4200000002, ())
                assert (v6.peer_ip, v6.as_path) == (GOBGP, ())
                assert v4.large_communities == (GOBGP_LARGE_COMMUNITY,)
                ns_run(netns, *api, "global", "rib", "del", "198.51.100.0/24", "-a", "ipv4")
                await collect(listener, {("198.51.100.0/24", False)})
            assert listener.stats.errors == 0
        finally:
            await listener.close()

    run_in_netns(netns, scenario)
