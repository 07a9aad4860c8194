"""Namespaces and real routing daemons for the bgp_guard feed tests.

Each test gets its own network namespace (only `lo`, so nothing leaves it). Our side runs in
a thread that joined that namespace (setns is per thread), so every socket the feed opens
lives there, next to the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bgp_guard.feeds.live import LiveFeed
from bgp_guard.update import PeerDown, Update

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
# Documentation addresses on the namespace's lo: daemons refuse 127/8 as a BGP neighbour.
NETNS_ADDRESSES = ("192.0.2.1/32", "192.0.2.2/32", "192.0.2.10/32")
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def loopback_netns(prefix: str) -> Iterator[str]:
    """A namespace of our own with NETNS_ADDRESSES on its loopback (tests and bench/)."""
    name = f"{prefix}{os.getpid() % 10000}{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for address in NETNS_ADDRESSES:
            subprocess.run(["ip", "-n", name, "addr", "add", address, "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    with loopback_netns("ocbgp") as name:
        yield name


def run_in_netns(name: str, scenario: Callable[[], Awaitable[T]], timeout: float = 90) -> T:
    """Run `scenario` in an event loop on a thread that joined netns `name`."""
    result: list[T] = []
    errors: list[BaseException] = []

    def thread() -> None:
        try:
            fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {name}")
            finally:
                os.close(fd)
            result.append(asyncio.run(asyncio.wait_for(scenario(), timeout)))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    worker.join(timeout + 10)
    if errors:
        raise errors[0]
    assert result, f"scenario in {name} did not finish in {timeout} s"
    return result[0]


@contextlib.contextmanager
def daemon(netns: str, argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a daemon in the foreground inside `netns`; always stopped on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ns_run(netns: str, *argv: str, attempts_until: float = 0) -> str:
    """Run a command in `netns`; with `attempts_until`, retry a failing command until then
    (a daemon's control socket or API takes a moment to appear)."""
    deadline = time.monotonic() + attempts_until
    while True:
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return proc.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
        time.sleep(0.1)


async def collect(
    feed: LiveFeed, want: set[tuple[str, bool]], timeout: float = 40
) -> dict[tuple[str, bool], Update]:
    """Read a live feed until every (prefix, announce) in `want` was seen; the last Update
    per key is returned. A PeerDown on the way fails: the test did not expect the session
    to end."""
    seen: dict[tuple[str, bool], Update] = {}

    async def read() -> None:
        async for update in feed.updates():
            if not isinstance(update, Update):  # PeerDown, graceful restart, End-of-RIB
                raise AssertionError(f"{update} while waiting for {sorted(want - seen.keys())}")
            seen[(str(update.prefix), update.announce)] = update
            if want <= seen.keys():
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"missing {sorted(want - seen.keys())}; got {sorted(seen)}") from None
    return seen


# The daemons' own ASNs: bird2 announces 198.51.100.0/24 and 2001:db8:1::/48 from BIRD_ASN,
# gobgpd originates what a test adds through its CLI (gobgp_announce) from GOBGP_ASN.
BIRD_ASN, GOBGP_ASN = 4200000001, 4200000002


def bird(
    tmp_path: Path,
    local: str,
    neighbour: str,
    neighbour_asn: int,
    options: str = "",
    channel_options: str = "",
    routes4: str = "route 198.51.100.0/24 blackhole;",
) -> tuple[list[str], str]:
    """bird2's argv and control socket, with one multihop BGP session (protocol `session`)
    from `local` to `neighbour` that exports `routes4` and 2001:db8:1::/48 (next hop
    2001:db8::1). `options` go in the session (a password, `passive on`), `channel_options`
    in both its channels."""
    conf = tmp_path / "bird.conf"
    conf.write_text(f"""
router id 192.0.2.1;
log stderr all;
protocol device {{}}
protocol static s4 {{ ipv4; {routes4} }}
protocol static s6 {{ ipv6; route 2001:db8:1::/48 blackhole; }}
protocol bgp session {{
  local {local} as {BIRD_ASN};
  neighbor {neighbour} as {neighbour_asn};
  multihop; strict bind; hold time 9;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  {options}
  ipv4 {{ import none; export all; {channel_options} }};
  ipv6 {{ import none; export all; next hop address 2001:db8::1; {channel_options} }};
}}
""")
    ctl = str(tmp_path / "bird.ctl")
    return ["bird", "-f", "-c", str(conf), "-s", ctl], ctl


def gobgpd(tmp_path: Path, address: str, *sections: str) -> tuple[list[str], list[str]]:
    """gobgpd's argv, listening on `address` (its API too) with its global config and
    `sections` (gobgpd_neighbour's, a BMP server), and the `gobgp` command for its API."""
    conf = tmp_path / "gobgpd.toml"
    conf.write_text(
        f"""
[global.config]
  as = {GOBGP_ASN}
  router-id = "192.0.2.2"
  port = 179
  local-address-list = ["{address}"]
"""
        + "".join(sections)
    )
    argv = ["gobgpd", "-f", str(conf), "--api-hosts", f"{address}:50051", "--pprof-disable"]
    return argv, ["gobgp", "-u", address, "-p", "50051"]


def gobgpd_neighbour(
    local: str,
    neighbour: str,
    neighbour_asn: int,
    password: str = "",
    families: tuple[str, ...] = ("ipv4-unicast", "ipv6-unicast"),
) -> str:
    """gobgpd's config of a passive session from `local` to `neighbour`, signed with
    TCP-MD5 when there is a `password`."""
    auth = f'\n    auth-password = "{password}"' if password else ""
    afi_safis = "".join(
        f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{family}"
"""
        for family in families
    )
    return f"""[[neighbors]]
  [neighbors.config]
    neighbor-address = "{neighbour}"
    peer-as = {neighbour_asn}{auth}
  [neighbors.transport.config]
    local-address = "{local}"
    passive-mode = true
{afi_safis}"""


# The large community (RFC 8092) gobgp_announce puts on its IPv4 route.
GOBGP_LARGE_COMMUNITY = (GOBGP_ASN, 8092, 1)


async def gobgp_announce(netns: str, api: list[str], feed: LiveFeed) -> tuple[Update, Update]:
    """Originate 198.51.100.0/24 (with GOBGP_LARGE_COMMUNITY) and 2001:db8:2::/48 in gobgpd
    (through its CLI `api`, retried until its API answers) and return the feed's Update for
    each."""
    v4, v6 = "198.51.100.0/24", "2001:db8:2::/48"
    large = ":".join(map(str, GOBGP_LARGE_COMMUNITY))
    add = ["global", "rib", "add", v4, "large-community", large, "-a", "ipv4"]
    ns_run(netns, *api, *add, attempts_until=20)
    ns_run(netns, *api, "global", "rib", "add", v6, "-a", "ipv6")
    got = await collect(feed, {(v4, True), (v6, True)})
    return got[(v4, True)], got[(v6, True)]


async def peer_down(feed: LiveFeed, peer_ip: str, timeout: float = 40) -> PeerDown:
    """Read a live feed until it reports `peer_ip`'s session down; Updates on the way are
    skipped."""

    async def read() -> PeerDown:
        async for item in feed.updates():
            if isinstance(item, PeerDown) and item.peer_ip == peer_ip:
                return item
        raise AssertionError("feed ended")

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"no PeerDown for {peer_ip} within {timeout} s") from None


# FRR's bgpd (Debian `frr`), run alone: no zebra (-Z), no kernel routes, root (-S).
FRR_ASN = 4200000003
BGPD = "/usr/lib/frr/bgpd"


def frr(
    tmp_path: Path,
    local: str,
    neighbour: str,
    neighbour_asn: int,
    neighbour_options: str = "",
    router_options: str = "",
    networks4: tuple[str, ...] = ("198.51.100.0/24",),
    extra: str = "",
    modules: tuple[str, ...] = (),
) -> tuple[list[str], list[str]]:
    """bgpd's argv, listening on `local`, with one multihop eBGP session to `neighbour`
    (`neighbour_options`, e.g. "password s3cret" or "passive", apply to it) originating
    `networks4` and 2001:db8:3::/48; `router_options` go under `router bgp` (graceful
    restart), `extra` after it (BMP targets). Also the vtysh command for its socket."""
    conf = tmp_path / "bgpd.conf"
    options = "".join(
        f" neighbor {neighbour} {o.strip()}\n" for o in neighbour_options.split(";") if o.strip()
    )
    conf.write_text(f"""frr defaults traditional
hostname frr
log stdout informational
router bgp {FRR_ASN}
 bgp router-id 192.0.2.3
 no bgp ebgp-requires-policy
 no bgp network import-check
{router_options}
 neighbor {neighbour} remote-as {neighbour_asn}
 neighbor {neighbour} ebgp-multihop 2
 neighbor {neighbour} update-source {local}
 neighbor {neighbour} timers 3 9
 neighbor {neighbour} timers connect 1
{options}
 address-family ipv4 unicast
{"".join(f"  network {n}{chr(10)}" for n in networks4)}
 exit-address-family
 address-family ipv6 unicast
  neighbor {neighbour} activate
  network 2001:db8:3::/48
 exit-address-family
{extra}
""")  # fmt: skip
    argv = [BGPD, "-Z", "-S", "-f", str(conf), "-i", str(tmp_path / "bgpd.pid"),
            "--vty_socket", str(tmp_path), "-l", local, "--log", "stdout"]  # fmt: skip
    for module in modules:
        argv += ["-M", module]
    return argv, ["vtysh", "--vty_socket", str(tmp_path)]
