"""The BGP session feed with TCP-MD5 (RFC 2385) against real bird2 and gobgpd, in a namespace.

With the same password on both sides the session reaches Established and UPDATEs arrive:
bird2 connecting to our passive speaker (IPv4), our active speaker connecting to bird2
(IPv6) and to gobgpd (IPv4). With a wrong password, or a password on one side only, the
kernel drops the TCP segments, counts why (TcpExtTCPMD5Failure, TCPMD5NotFound,
TCPMD5Unexpected; per namespace) and neither the daemon nor our speaker reaches
Established.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bgp_guard.config import Feeds
from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.feeds.tcp_md5 import TcpMd5Key
from bgp_guard.watch import start_feeds
from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import (
    BIRD_ASN,
    GOBGP_ASN,
    bird,
    collect,
    daemon,
    gobgp_announce,
    gobgpd,
    gobgpd_neighbour,
    ns_run,
    run_in_netns,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

OUR_ASN = 65010
US, THEM = "192.0.2.10", "192.0.2.1"  # on the namespace's lo (conftest)
US6, THEM6 = "2001:db8::10", "2001:db8::1"
PASSWORD, WRONG = "Md5-over-eBGP!", "not-the-password"
BIRD_V4 = "198.51.100.0/24"
BIRD_V6 = "2001:db8:1::/48"

# Why the kernel dropped a segment (include/uapi/linux/snmp.h), as /proc/net/netstat names it.
MD5_FAILURE = "TCPMD5Failure"  # signed with another password
MD5_NOT_FOUND = "TCPMD5NotFound"  # unsigned, but we hold a password for the sender
MD5_UNEXPECTED = "TCPMD5Unexpected"  # signed, but we hold no password for the sender


def md5_drops(netns: str) -> dict[str, int]:
    """The namespace's TcpExt counters of segments the kernel dropped for TCP-MD5."""
    header, values = (
        line.split()
        for line in ns_run(netns, "cat", "/proc/net/netstat").splitlines()
        if line.startswith("TcpExt:")
    )
    counters = dict(zip(header[1:], map(int, values[1:]), strict=True))
    return {name: counters[name] for name in (MD5_FAILURE, MD5_NOT_FOUND, MD5_UNEXPECTED)}


async def until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        await asyncio.sleep(0.1)


def md5_keys(netns: str, us: str, them: str) -> str:
    """What `ss` reports of the TCP-MD5 keys on our established socket to `them`: the
    kernel's word that the session's segments are signed."""
    src, dst = (f"[{a}]" if ":" in a else a for a in (us, them))
    out = ns_run(netns, "ss", "-tnie", "state", "established", "src", src, "dst", dst)
    return " ".join(word for word in out.split() if word.startswith("md5keys:"))


def speaker_to(peer: str, asn: int, password: str | None) -> BgpSpeaker:
    """Our speaker for one neighbour, with its TCP-MD5 `password` if there is one."""
    keys = {peer: TcpMd5Key(password.encode())} if password else {}
    return BgpSpeaker(OUR_ASN, US, {peer: asn}, hold_time=9, passwords=keys)


def bird_state(netns: str, ctl: str) -> str:
    return ns_run(netns, "birdc", "-s", ctl, "show", "protocols", "session", attempts_until=10)


@pytest.fixture
def ipv6_netns(netns: str) -> str:
    for address in (US6, THEM6):
        ns_run(netns, "ip", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
    return netns


def test_bird2_connects_with_the_password(netns: str, tmp_path: Path) -> None:
    """Passive, IPv4, set up as `guard watch` does it: the config names a password file,
    and the listener holds bird's password from it."""
    require_binaries("bird", "birdc")
    argv, ctl = bird(tmp_path, THEM, US, OUR_ASN, f'password "{PASSWORD}";')
    (tmp_path / "bird.password").write_text(PASSWORD + "\n")
    (tmp_path / "bird.password").chmod(0o600)
    neighbour = {"asn": BIRD_ASN, "password_file": "bird.password"}
    bgp = {"local_asn": OUR_ASN, "router_id": US, "listen": US, "hold_time": 9}
    config = Feeds.model_validate({"bgp": {**bgp, "neighbours": {THEM: neighbour}}})

    async def scenario() -> None:
        (speaker,) = await start_feeds(config, config_dir=tmp_path)
        assert isinstance(speaker, BgpSpeaker)
        try:
            with daemon(netns, argv, tmp_path / "bird.log"):
                got = await collect(speaker, {(BIRD_V4, True), (BIRD_V6, True)}, timeout=20)
                assert got[(BIRD_V4, True)].as_path == (BIRD_ASN,)
                assert "Established" in bird_state(netns, ctl)
                assert speaker.established[THEM].peer_asn == BIRD_ASN
                assert THEM in md5_keys(netns, US, THEM)
                assert set(md5_drops(netns).values()) == {0}
        finally:
            await speaker.close()

    run_in_netns(netns, scenario, timeout=50)


def test_we_connect_to_bird2_over_ipv6_with_the_password(ipv6_netns: str, tmp_path: Path) -> None:
    """Active, IPv6 transport: the key is on our socket before the SYN."""
    require_binaries("bird", "birdc")
    netns = ipv6_netns
    argv, ctl = bird(tmp_path, THEM6, US6, OUR_ASN, f'password "{PASSWORD}"; passive on;')

    async def scenario() -> None:
        speaker = speaker_to(THEM6, BIRD_ASN, PASSWORD)
        try:
            with daemon(netns, argv, tmp_path / "bird.log"):
                bird_state(netns, ctl)  # bird is up and listening
                speaker.connect(THEM6, local_address=US6, retry=0.2)
                got = await collect(speaker, {(BIRD_V6, True)}, timeout=20)
                assert got[(BIRD_V6, True)].peer_ip == THEM6
                assert "Established" in bird_state(netns, ctl)
                assert THEM6 in md5_keys(netns, US6, THEM6)
        finally:
            await speaker.close()

    run_in_netns(netns, scenario, timeout=50)


def test_we_connect_to_gobgpd_with_the_password(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    argv, api = gobgpd(tmp_path, THEM, gobgpd_neighbour(THEM, US, OUR_ASN, PASSWORD))

    async def scenario() -> None:
        speaker = speaker_to(THEM, GOBGP_ASN, PASSWORD)
        try:
            with daemon(netns, argv, tmp_path / "gobgpd.log"):
                speaker.connect(THEM, local_address=US, retry=0.2)
                v4, v6 = await gobgp_announce(netns, api, speaker)
                assert (v4.peer_asn, v6.peer_asn) == (GOBGP_ASN, GOBGP_ASN)
                assert "established" in ns_run(netns, *api, "neighbor", US).lower()
                assert THEM in md5_keys(netns, US, THEM)
        finally:
            await speaker.close()

    run_in_netns(netns, scenario, timeout=50)


@pytest.mark.parametrize(
    ("ours", "theirs", "dropped_as"),
    [
        (PASSWORD, WRONG, MD5_FAILURE),
        (PASSWORD, None, MD5_NOT_FOUND),
        (None, PASSWORD, MD5_UNEXPECTED),
    ],
    ids=["wrong-password", "password-only-on-our-side", "password-only-on-bird"],
)
def test_bird2_without_the_same_password_never_establishes(
    netns: str, tmp_path: Path, ours: str | None, theirs: str | None, dropped_as: str
) -> None:
    require_binaries("bird", "birdc")
    argv, ctl = bird(tmp_path, THEM, US, OUR_ASN, f'password "{theirs}";' if theirs else "")

    async def scenario() -> None:
        speaker = speaker_to(THEM, BIRD_ASN, ours)
        await speaker.listen(US)
        try:
            with daemon(netns, argv, tmp_path / "bird.log"):
                # bird dials every second; wait until the kernel dropped three of its SYNs
                await until(lambda: md5_drops(netns)[dropped_as] >= 3, f"{dropped_as} drops")
                assert "Established" not in bird_state(netns, ctl)
                assert not speaker.established and speaker.stats.updates == 0
        finally:
            await speaker.close()

    run_in_netns(netns, scenario, timeout=50)


def test_gobgpd_with_another_password_never_establishes(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    argv, api = gobgpd(tmp_path, THEM, gobgpd_neighbour(THEM, US, OUR_ASN, WRONG))

    async def scenario() -> None:
        speaker = speaker_to(THEM, GOBGP_ASN, PASSWORD)
        try:
            with daemon(netns, argv, tmp_path / "gobgpd.log"):
                ns_run(netns, *api, "global", attempts_until=20)  # gobgpd listens
                speaker.connect(THEM, local_address=US, retry=0.2)
                # our SYN and its retransmissions (1 s, then 2 s later) are dropped
                await until(lambda: md5_drops(netns)[MD5_FAILURE] >= 2, "TCPMD5Failure drops")
                assert "established" not in ns_run(netns, *api, "neighbor", US).lower()
                assert not speaker.established and speaker.stats.updates == 0
        finally:
            await speaker.close()

    run_in_netns(netns, scenario, timeout=50)
