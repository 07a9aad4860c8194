"""The live feeds against FRR 8.4 (Debian `frr`), in a namespace of their own: a session each
way signed with TCP-MD5 (FRR connecting to us over IPv4, us connecting to FRR over IPv6),
FRR as a BMP exporter, and FRR's graceful restart (RFC 4724): a planned restart leaves every
event as it was, a route FRR no longer announces after it is withdrawn at End-of-RIB, and a
router that does not come back is still withdrawn when its restart time runs out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.config import GuardConfig
from bgp_guard.engine import Guard
from bgp_guard.feeds.bmp import BmpListener
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.feeds.tcp_md5 import TcpMd5Key
from bgp_guard.sinks.text import render
from bgp_guard.update import EndOfRib, FeedItem, PeerDown, PeerRestarting
from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import (
    BIRD_ASN,
    FRR_ASN,
    bird,
    collect,
    daemon,
    frr,
    ns_run,
    run_in_netns,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(150)]

US, THEM, US6, THEM6 = "192.0.2.10", "192.0.2.1", "2001:db8::10", "2001:db8::1"
OUR_ASN = 65010
PASSWORD = "frr-md5-s3cret"
KEY = TcpMd5Key(PASSWORD.encode(), "test")


def require_frr() -> None:
    require_binaries("/usr/lib/frr/bgpd", "vtysh")


def test_frr_connects_to_us_with_tcp_md5(netns: str, tmp_path: Path) -> None:
    require_frr()
    argv, _ = frr(tmp_path, THEM, US, OUR_ASN, f"password {PASSWORD}")

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, US, peers={THEM: FRR_ASN}, hold_time=9, passwords={THEM: KEY})
        await speaker.listen(US)
        try:
            with daemon(netns, argv, tmp_path / "bgpd.log"):
                got = await collect(speaker, {("198.51.100.0/24", True), ("2001:db8:3::/48", True)})
                v4 = got[("198.51.100.0/24", True)]
                assert (v4.peer_ip, v4.peer_asn, v4.as_path) == (THEM, FRR_ASN, (FRR_ASN,))
                session = speaker.established[THEM]
                assert session.max_length == 65535  # FRR advertises RFC 8654 too
            assert speaker.stats.errors == 0 and not speaker.stats.actions
        finally:
            await speaker.close()

    run_in_netns(netns, scenario)


def test_we_connect_to_frr_over_ipv6_with_tcp_md5(netns: str, tmp_path: Path) -> None:
    require_frr()
    for address in (US6, THEM6):
        ns_run(netns, "ip", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
    argv, vtysh = frr(tmp_path, THEM6, US6, OUR_ASN, f"password {PASSWORD}; passive")

    async def scenario() -> None:
        speaker = BgpSpeaker(
            OUR_ASN, US, peers={THEM6: FRR_ASN}, hold_time=9, passwords={THEM6: KEY}
        )
        with daemon(netns, argv, tmp_path / "bgpd.log"):
            speaker.connect(THEM6, local_address=US6, retry=0.2)
            try:
                got = await collect(speaker, {("198.51.100.0/24", True), ("2001:db8:3::/48", True)})
                assert got[("2001:db8:3::/48", True)].peer_ip == THEM6
                summary = ns_run(netns, *vtysh, "-c", f"show bgp neighbor {US6}")
                assert "BGP state = Established" in summary, summary
            finally:
                await speaker.close()

    run_in_netns(netns, scenario)


def test_frr_bmp_export(netns: str, tmp_path: Path) -> None:
    """bird2 (AS BIRD_ASN) -> FRR -> BMP (pre- and post-policy) -> us; bird going away is a
    Peer Down. FRR's Route Monitoring puts FRR's own AS in front of the peer's AS path (a
    known FRR bug, noted in the README): the test pins it, so that a fixed FRR is noticed."""
    require_frr()
    require_binaries("bird")
    bird_dir = tmp_path / "bird"
    bird_dir.mkdir()
    bird_argv, _ = bird(bird_dir, "192.0.2.2", THEM, FRR_ASN)
    bmp = f"""router bgp {FRR_ASN}
 bmp targets guard
  bmp connect {US} port 11019 min-retry 100 max-retry 1000
  bmp monitor ipv4 unicast pre-policy
  bmp monitor ipv4 unicast post-policy
 exit
"""
    # FRR keeps the pre-policy Adj-RIB-In only with soft-reconfiguration inbound; without
    # it, pre-policy Route Monitoring withdraws every route.
    argv, _ = frr(
        tmp_path,
        THEM,
        "192.0.2.2",
        BIRD_ASN,
        "soft-reconfiguration inbound",
        networks4=(),
        extra=bmp,
        modules=("bmp",),
    )

    async def scenario() -> tuple[list[tuple[Any, ...]], PeerDown]:
        listener = BmpListener()
        await listener.listen(US, 11019)
        try:
            with (
                daemon(netns, argv, tmp_path / "bgpd.log"),
                daemon(netns, bird_argv, tmp_path / "bird.log") as bird_proc,
            ):
                paths: list[tuple[Any, ...]] = []

                async def read() -> PeerDown:
                    async for item in listener.updates():
                        if isinstance(item, PeerDown) and len(paths) == 2:
                            return item
                        if isinstance(item, PeerDown | PeerRestarting | EndOfRib):
                            continue  # FRR sends a Peer Down for bird before it is up
                        if (str(item.prefix), item.peer_ip) == ("198.51.100.0/24", "192.0.2.2"):
                            paths.append(item.as_path)
                            if len(paths) == 2:  # pre- and post-policy
                                bird_proc.send_signal(signal.SIGTERM)
                    raise AssertionError("feed ended")

                down = await asyncio.wait_for(read(), 60)
            assert listener.stats.errors == 0
            return paths, down
        finally:
            await listener.close()

    paths, down = run_in_netns(netns, scenario)
    # bird sent (BIRD_ASN,); FRR 8.4 puts its own AS in front, pre- and post-policy alike.
    assert paths == [(FRR_ASN, BIRD_ASN)] * 2
    assert (down.peer_ip, down.peer_asn) == ("192.0.2.2", BIRD_ASN)


# --- graceful restart ---------------------------------------------------------------------


GR_CONFIG = " bgp graceful-restart\n bgp graceful-restart restart-time 6\n"
HIJACKS = ("203.0.113.0/25", "203.0.113.128/25")  # more-specifics of a prefix we monitor


class Pump:
    """Feeds a live feed's items to a Guard, keeping the events and the peer items."""

    def __init__(self, feed: LiveFeed, guard: Guard) -> None:
        self.feed, self.guard = feed, guard
        self.events: list[dict[str, Any]] = []
        self.peer_items: list[FeedItem] = []

    async def until(self, done: Callable[[], bool], timeout: float = 40) -> None:
        async def read() -> None:
            async for item in self.feed.updates():
                if isinstance(item, PeerDown | PeerRestarting | EndOfRib):
                    self.peer_items.append(item)
                self.events += self.guard.process(item)
                if done():
                    return

        await asyncio.wait_for(read(), timeout)

    def states(self) -> dict[str, str]:
        return {str(e.finding.prefix): e.state for e in self.guard.table.events.values()}


def test_frr_graceful_restart_withdraws_nothing(netns: str, tmp_path: Path) -> None:
    require_frr()
    config = GuardConfig.model_validate(
        {"prefixes": {"203.0.113.0/24": {"origins": [64500], "max_length": 25}}}
    )
    guard = Guard(config)
    argv, _ = frr(tmp_path, THEM, US, OUR_ASN, router_options=GR_CONFIG, networks4=HIJACKS)
    # After the restart FRR announces only the first: the second must go at End-of-RIB.
    after = tmp_path / "after"
    after.mkdir()
    argv_after, _ = frr(after, THEM, US, OUR_ASN, router_options=GR_CONFIG, networks4=HIJACKS[:1])

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, US, peers={THEM: FRR_ASN}, hold_time=9)
        await speaker.listen(US)
        pump = Pump(speaker, guard)
        try:
            with daemon(netns, argv, tmp_path / "bgpd.log"):
                await pump.until(lambda: pump.states() == dict.fromkeys(HIJACKS, "ongoing"))
                assert speaker.established[THEM].restart_versions == {4, 6}
                ongoing = len(pump.events)
            # bgpd stopped: FRR says Cease; with the N bit (RFC 8538) a graceful restart,
            # which the peer-down event (guard watch) names as one.
            await pump.until(lambda: any(isinstance(i, PeerRestarting) for i in pump.peer_items))
            restarting_said = list(speaker.peers_down().values())
            with daemon(netns, argv_after, after / "bgpd.log"):
                await pump.until(lambda: any(isinstance(i, EndOfRib) and i.version == 4
                                             for i in pump.peer_items))  # fmt: skip
                restart = pump.events[ongoing:]
                assert [(e["prefix"], e["state"]) for e in restart] == [
                    (HIJACKS[1], "withdrawn")
                ], restart
                assert pump.states() == {HIJACKS[0]: "ongoing", HIJACKS[1]: "withdrawn"}
                assert not any(isinstance(i, PeerDown) for i in pump.peer_items)
                assert isinstance(pump.peer_items[0], PeerRestarting)
                assert "is restarting" in restarting_said[0]
            # A real loss: bgpd gone for longer than its restart time (6 s).
            await pump.until(lambda: any(isinstance(i, PeerDown) for i in pump.peer_items))
            assert pump.states()[HIJACKS[0]] == "withdrawn"
        finally:
            await speaker.close()

    run_in_netns(netns, scenario)


def test_frr_blackhole_community_is_flagged(netns: str, tmp_path: Path) -> None:
    """FRR tags a more-specific of our prefix with BLACKHOLE (RFC 7999) and a large
    community: the events carry both, and flag_communities raises a `community` event."""
    require_frr()
    tags = (
        "route-map BH permit 10\n set community blackhole\n set large-community 4200000003:8092:1\n"
    )
    argv, _ = frr(
        tmp_path, THEM, US, OUR_ASN, networks4=("203.0.113.128/25 route-map BH",), extra=tags
    )
    config = GuardConfig.model_validate(
        {"prefixes": {"203.0.113.0/24": {"origins": [64500], "flag_communities": ["BLACKHOLE"]}}}
    )
    guard = Guard(config)

    async def scenario() -> None:
        speaker = BgpSpeaker(OUR_ASN, US, peers={THEM: FRR_ASN}, hold_time=9)
        await speaker.listen(US)
        pump = Pump(speaker, guard)
        try:
            with daemon(netns, argv, tmp_path / "bgpd.log"):
                await pump.until(
                    lambda: {e["type"] for e in pump.events} >= {"community", "subprefix-origin"}
                )
        finally:
            await speaker.close()
        flagged = next(e for e in pump.events if e["type"] == "community")
        assert "65535:666" in flagged["communities"]
        assert flagged["large_communities"] == ["4200000003:8092:1"]
        assert flagged["offending_as"] == FRR_ASN and "(not ours)" in flagged["rationale"]
        assert "65535:666 (BLACKHOLE)" in render(flagged)

    run_in_netns(netns, scenario)


def test_a_wrong_md5_password_is_a_warning_and_a_peer_down(
    netns: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16: FRR drops our SYNs (the password is wrong) without a word; we say so at
    WARNING, pointing at the password, and after a hold time the neighbour is down."""
    require_frr()
    argv, _ = frr(tmp_path, THEM, US, OUR_ASN, f"password {PASSWORD}; passive")

    async def scenario() -> dict[str, str]:
        wrong = {THEM: TcpMd5Key(b"not-the-password", "test")}
        speaker = BgpSpeaker(OUR_ASN, US, peers={THEM: FRR_ASN}, hold_time=3, passwords=wrong)
        speaker.connect_timeout = 1.0
        with daemon(netns, argv, tmp_path / "bgpd.log"):
            speaker.connect(THEM, local_address=US, retry=0.2)
            try:
                while not speaker.peers_down():
                    await asyncio.sleep(0.1)
                return speaker.peers_down()
            finally:
                await speaker.close()

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.session"):
        down = run_in_netns(netns, scenario)
    hint = "no answer within 1 s; check the TCP-MD5 password on both routers"
    assert f"BGP neighbour {THEM} port 179 unreachable: {hint}" in caplog.text
    assert down == {f"BGP neighbour {THEM}": f"BGP neighbour {THEM} unreachable: {hint}"}
