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
    BIRD_ASN,
    GOBGP_ASN,
    GOBGP_LARGE_COMMUNITY,
    bird,
    collect,
    daemon,
    gobgp_announce,
    gobgpd,
    gobgpd_neighbour,
    ns_run,
    peer_down,
    run_in_netns,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

US, BIRD, GOBGP = "192.0.2.10", "192.0.2.1", "192.0.2.2"
BMP_PORT = 11019


def bmp_server(policy: str) -> str:
    """gobgpd's config of a BMP export to us, of the routes at `policy` (RFC 7854, 9069)."""
    return f"""[[bmp-servers]]
  [bmp-servers.config]
    address = "{US}"
    port = {BMP_PORT}
    route-monitoring-policy = "{policy}"
"""


def test_gobgpd_bmp_export(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp", "bird", "birdc")
    gobgpd_argv, _ = gobgpd(
        tmp_path, GOBGP, bmp_server("pre-policy"), gobgpd_neighbour(GOBGP, BIRD, BIRD_ASN)
    )
    bird_argv, ctl = bird(tmp_path, BIRD, GOBGP, GOBGP_ASN)

    async def scenario() -> None:
        listener = BmpListener()
        await listener.listen(US, BMP_PORT)
        try:
            with (
                daemon(netns, gobgpd_argv, tmp_path / "gobgpd.log"),
                daemon(netns, bird_argv, tmp_path / "bird.log") as bird_proc,
            ):
                got = await collect(
                    listener, {("198.51.100.0/24", True), ("2001:db8:1::/48", True)}
                )
                v4, v6 = got[("198.51.100.0/24", True)], got[("2001:db8:1::/48", True)]
                # Attributed to the monitored peer (bird), not to the router (gobgpd).
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (BIRD, BIRD_ASN, (BIRD_ASN,))
                assert v4.next_hop == BIRD and v4.source.startswith("bmp:")
                assert (v6.peer_ip, v6.as_path, v6.next_hop) == (BIRD, (BIRD_ASN,), "2001:db8::1")
                ns_run(netns, "birdc", "-s", ctl, "disable", "s4")
                await collect(listener, {("198.51.100.0/24", False)})
                # Peer Down: what bird still announced is gone; the guard withdraws it.
                bird_proc.terminate()
                down = await peer_down(listener, BIRD)
                assert down.peer_asn == BIRD_ASN and down.source.startswith("bmp:")
                assert listener.stats.peer_downs == 1
            assert listener.stats.errors == 0
            assert listener.stats.records >= 4  # initiation, peer up, route monitoring, peer down
        finally:
            await listener.close()

    run_in_netns(netns, scenario)


def test_gobgpd_loc_rib_routes_from_the_cli(netns: str, tmp_path: Path) -> None:
    """Loc-RIB monitoring (RFC 9069): routes injected with `gobgp global rib add` arrive."""
    require_binaries("gobgpd", "gobgp")
    argv, api = gobgpd(tmp_path, GOBGP, bmp_server("local-rib"))

    async def scenario() -> None:
        listener = BmpListener()
        await listener.listen(US, BMP_PORT)
        try:
            with daemon(netns, argv, tmp_path / "gobgpd.log"):
                v4, v6 = await gobgp_announce(netns, api, listener)
                # Locally originated: empty AS path; the router (its BGP identifier) is the peer.
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (GOBGP, GOBGP_ASN, ())
                assert (v6.peer_ip, v6.as_path) == (GOBGP, ())
                assert v4.large_communities == (GOBGP_LARGE_COMMUNITY,)
                ns_run(netns, *api, "global", "rib", "del", "198.51.100.0/24", "-a", "ipv4")
                await collect(listener, {("198.51.100.0/24", False)})
            assert listener.stats.errors == 0
        finally:
            await listener.close()

    run_in_netns(netns, scenario)
