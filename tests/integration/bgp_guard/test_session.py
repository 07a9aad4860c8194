"""The live BGP session feed against real bird2 and gobgpd, each in its own namespace.

bird2 connects to our passive speaker; we connect actively to gobgpd. Both announce
documentation prefixes from 4-byte private ASNs over IPv4 and IPv6 unicast; we assert the
Updates (AS path, next hop, origin), the withdrawals, and that a dropped session is reported
as a PeerDown (the guard then withdraws what it had announced).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.update import Prefix
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

OUR_ASN = 65010
# Both ends on the namespace's lo (bird refuses 127/8 neighbours), so the session is multihop.
US, THEM = "192.0.2.10", "192.0.2.1"
# bird's IPv4 routes: one with a large community (RFC 8092), and a more-specific.
BIRD_ROUTES4 = (
    f"route 198.51.100.0/24 blackhole {{ bgp_large_community.add(({BIRD_ASN}, 8092, 2)); }}; "
    "route 198.51.100.128/25 blackhole;"
)


def test_bird2_passive(netns: str, tmp_path: Path) -> None:
    require_binaries("bird", "birdc")
    argv, ctl = bird(
        tmp_path, THEM, US, OUR_ASN, channel_options="add paths tx;", routes4=BIRD_ROUTES4
    )

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, "192.0.2.10", peers={THEM: BIRD_ASN}, hold_time=9)
        await speaker.listen(US)
        try:
            with daemon(netns, argv, tmp_path / "bird.log") as bird_proc:
                got = await collect(
                    speaker,
                    {
                        ("198.51.100.0/24", True),
                        ("198.51.100.128/25", True),
                        ("2001:db8:1::/48", True),
                    },
                )
                v4, v6 = got[("198.51.100.0/24", True)], got[("2001:db8:1::/48", True)]
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (THEM, BIRD_ASN, (BIRD_ASN,))
                assert v4.origin == BIRD_ASN and v4.next_hop == THEM
                assert v4.large_communities == ((BIRD_ASN, 8092, 2),)  # RFC 8092
                assert v6.as_path == (BIRD_ASN,) and v6.next_hop == "2001:db8::1"
                assert speaker.established[THEM].asn4
                # bird offered ADD-PATH tx and we rx (RFC 7911): every route has a path id.
                assert speaker.established[THEM].add_path == {1, 2}
                assert v4.path_id is not None and v6.path_id is not None
                # A withdrawal, then the whole session going away.
                ns_run(netns, "birdc", "-s", ctl, "disable", "s4")
                await collect(speaker, {("198.51.100.0/24", False), ("198.51.100.128/25", False)})
                bird_proc.terminate()
                down = await peer_down(speaker, THEM)
                assert (down.peer_asn, down.source) == (BIRD_ASN, f"session:{THEM}")
            assert speaker.stats.errors == 0
        finally:
            await speaker.close()

    run_in_netns(netns, scenario)


def test_gobgpd_active(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    argv, api = gobgpd(tmp_path, THEM, gobgpd_neighbour(THEM, US, OUR_ASN))

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, "192.0.2.10", peers={THEM: GOBGP_ASN}, hold_time=9)
        with daemon(netns, argv, tmp_path / "gobgpd.log"):
            speaker.connect(THEM, local_address=US, retry=0.2)
            try:
                v4, v6 = await gobgp_announce(netns, api, speaker)
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (THEM, GOBGP_ASN, (GOBGP_ASN,))
                assert v6.prefix == Prefix.parse("2001:db8:2::/48") and v6.as_path == (GOBGP_ASN,)
                assert v4.path_id is None  # gobgpd was not configured for ADD-PATH
                assert v4.large_communities == (GOBGP_LARGE_COMMUNITY,)
                ns_run(netns, *api, "global", "rib", "del", "2001:db8:2::/48", "-a", "ipv6")
                await collect(speaker, {("2001:db8:2::/48", False)})
                assert speaker.stats.errors == 0
            finally:
                await speaker.close()

    run_in_netns(netns, scenario)


def test_wrong_peer_asn_is_refused(netns: str, tmp_path: Path) -> None:
    """A neighbour claiming another ASN gets OPEN error 2/2 and never reaches Established."""
    require_binaries("bird")
    argv, _ = bird(tmp_path, THEM, US, OUR_ASN)

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, "192.0.2.10", peers={THEM: 64511}, hold_time=9)
        await speaker.listen(US)
        try:
            with daemon(netns, argv, tmp_path / "bird.log"):
                log = tmp_path / "bird.log"
                deadline = time.monotonic() + 20
                while "Bad peer AS" not in log.read_text():
                    assert time.monotonic() < deadline, log.read_text()
                    await asyncio.sleep(0.1)
            assert not speaker.established and speaker.stats.updates == 0
        finally:
            await speaker.close()

    run_in_netns(netns, scenario)
