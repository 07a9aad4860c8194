"""Hosts left at MTU 1500 behind two sites, across routed (L3) and stretched (L2) segments,
over underlays of MTU 1500, 1460 and 1280: TCP carries data both ways over IPv4 and IPv6
and no namespace fragments or reassembles a packet. Real wireguard-go, OVS (userspace
datapath, a learning switch without a controller), kernel VXLAN and nftables.

Without the L2 clamp TCP hangs: the switch drops full-size frames at the VXLAN device
(the failure the clamp is for, shown once), and a re-apply puts the clamp back.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge import mss
from bridge.apply import apply_site, remove_site
from controller.ovsdb import Ovsdb
from overcast.config import loads
from tests.conftest import require_binaries
from tests.integration.bridge.sites import Lab, eventually, in_ns, sh
from tests.integration.controller.netns import OvsSwitch

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

SITES = """\
sites:
  hq:    {{role: enterprise, underlay: 192.0.2.1, underlay_mtu: {mtu}}}
  cloud: {{role: provider, underlay: 192.0.2.2, underlay_mtu: {mtu}}}
segments:
  finance: {{mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}}
  apps:
    mode: l3
    prefixes: [10.20.0.0/16, "2001:db8:20::/48"]
    sites: [hq, cloud]
    announce:
      hq: [10.20.1.0/24{v6_hq}]
      cloud: [10.20.2.0/24{v6_cloud}]
"""


def config(mtu: int) -> str:
    # IPv6 needs a link MTU of 1280 (RFC 8200 section 5): a 1280 underlay leaves WireGuard
    # 1220, so IPv6 is only routed over the wider underlays (the plan refuses it otherwise).
    v6 = mtu - 60 >= 1280
    return SITES.format(
        mtu=mtu,
        v6_hq=', "2001:db8:20:1::/64"' if v6 else "",
        v6_cloud=', "2001:db8:20:2::/64"' if v6 else "",
    )


# Per site: the L2 host's addresses on the stretched segment, the L3 host's LAN.
L2_HOST = {"hq": ("203.0.113.1", "2001:db8:10::1"), "cloud": ("203.0.113.2", "2001:db8:10::2")}
L3_LAN = {"hq": 1, "cloud": 2}
FRAG_COUNTERS = ("FragCreates", "FragOKs", "ReasmReqds")


@dataclass
class Hosts:
    l2: dict[str, str]  # site -> host namespace on the stretched segment
    l3: dict[str, str]  # site -> host namespace on the routed LAN
    switches: dict[str, OvsSwitch]


@pytest.fixture
def hosts(lab: Lab) -> Iterator[Hosts]:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "nft", "ethtool")
    made = Hosts(l2={}, l3={}, switches={})
    try:
        for site, ns in lab.netns.items():
            made.switches[site] = sw = OvsSwitch(ns)
            with Ovsdb(sw.remote) as db:
                # Standalone: a learning switch (NORMAL), no controller needed.
                db.ensure_bridge(lab.config.sites[site].switch.bridge, fail_mode="standalone")
                made.l2[site] = h = _host(f"{ns}-l2", ns, "acc1")
                db.ensure_port(lab.config.sites[site].switch.bridge, "acc1")
            v4, v6 = L2_HOST[site]
            in_ns(h, "ip", "addr", "add", f"{v4}/24", "dev", "eth0")
            in_ns(h, "ip", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            # Userspace OVS does not complete partial checksums (ARCHITECTURE.md).
            for where, dev in ((h, "eth0"), (ns, "acc1")):
                in_ns(where, "ethtool", "-K", dev, "tx", "off")
            n = L3_LAN[site]
            made.l3[site] = h = _host(f"{ns}-l3", ns, "lan1")
            for where, dev, last in ((ns, "lan1", 1), (h, "eth0", 10)):
                in_ns(where, "ip", "addr", "add", f"10.20.{n}.{last}/24", "dev", dev)
                in_ns(
                    where, "ip", "addr", "add", f"2001:db8:20:{n}::{last}/64", "dev", dev, "nodad"
                )
            in_ns(h, "ip", "route", "add", "default", "via", f"10.20.{n}.1")
            in_ns(h, "ip", "-6", "route", "add", "default", "via", f"2001:db8:20:{n}::1")
        yield made
    finally:
        for site, ns in lab.netns.items():
            if site in made.switches:
                remove_site(lab.plan(site), netns=ns, run_dir=lab.run_dir)
                made.switches[site].close()
        for ns in (*made.l2.values(), *made.l3.values()):
            sh("ip", "netns", "del", ns, check=False)


def _host(name: str, site_ns: str, port: str) -> str:
    sh("ip", "netns", "add", name)
    in_ns(name, "ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", port, "netns", site_ns, "type", "veth",
       "peer", "name", "eth0", "netns", name)  # fmt: skip
    in_ns(name, "ip", "link", "set", "eth0", "up")  # MTU 1500, as a real host has
    in_ns(site_ns, "ip", "link", "set", port, "up")
    return name


# A TCP server that reads until the client is done, says how much it got and sends as much
# back; and its client. Plain sockets: the hosts' own stacks, default MSS, MTU 1500.
SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 5201), family=socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
print("listening", flush=True)
conn, _ = srv.accept()
conn.settimeout(8)
got = 0
while data := conn.recv(65536):
    got += len(data)
conn.sendall(b"%d\\n" % got + bytes(got))
conn.close()
"""
CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], 5201), timeout=8)
conn.sendall(bytes(int(sys.argv[2])))
conn.shutdown(socket.SHUT_WR)
back = b""
while data := conn.recv(65536):
    back += data
count, _, rest = back.partition(b"\\n")
print(int(count), len(rest))
"""


def transfer(client: str, server: str, address: str, size: int = 1 << 20) -> tuple[int, int]:
    """Bytes a TCP connection from `client` to `address` (in `server`) delivers each way;
    (0, 0) if TCP hangs (given up after 8 s without progress)."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server, sys.executable, "-c", SERVER, address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "listening"
        argv = ["ip", "netns", "exec", client, sys.executable, "-c", CLIENT, address, str(size)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return 0, 0
        there, back = done.stdout.split()
        return int(there), int(back)
    finally:
        srv.kill()
        srv.wait()


def frag_counters(ns: str) -> dict[str, int]:
    """IPv4 (/proc/net/snmp) and IPv6 (/proc/net/snmp6) fragmentation counters of `ns`."""
    snmp = in_ns(ns, "cat", "/proc/net/snmp").stdout.splitlines()
    names, values = next(
        (a.split()[1:], b.split()[1:])
        for a, b in itertools.pairwise(snmp)
        if a.startswith("Ip:") and b.startswith("Ip:")
    )
    ip4 = dict(zip(names, values, strict=True))
    ip6 = dict(line.split() for line in in_ns(ns, "cat", "/proc/net/snmp6").stdout.splitlines())
    return {f"Ip{c}": int(ip4[c]) for c in FRAG_COUNTERS} | {
        f"Ip6{c}": int(ip6[f"Ip6{c}"]) for c in FRAG_COUNTERS
    }


def both_ways(client: str, server: str, address: str) -> bool:
    return transfer(client, server, address) == (1 << 20, 1 << 20)


@pytest.mark.parametrize(
    "lab", [config(1500), config(1460), config(1280)], ids=["1500", "1460", "1280"], indirect=True
)
def test_hosts_at_1500_carry_tcp_without_fragments(lab: Lab, hosts: Hosts) -> None:
    plans = {site: lab.plan(site) for site in lab.netns}
    for site, plan in plans.items():
        with Ovsdb(hosts.switches[site].remote) as db:
            apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir, switch=db)
    hq, cloud = plans["hq"], plans["cloud"]
    wg_mtu = lab.config.sites["hq"].underlay_mtu - 60
    assert hq.wireguard.mtu == wg_mtu
    (route,) = [r for r in hq.routes if r.prefix.version == 4]
    assert (str(route.prefix), route.peer, route.mss) == ("10.20.2.0/24", "cloud", wg_mtu - 40)
    (tunnel,) = hq.tunnels()
    assert tunnel.mtu == wg_mtu - 50

    # Routed: the prefix cloud announces is routed into hq's tunnel and bound to cloud's key.
    shown = in_ns(lab.netns["hq"], "ip", "-j", "route", "show", "10.20.2.0/24").stdout
    assert json.loads(shown)[0]["dev"] == hq.wireguard.name
    allowed = in_ns(lab.netns["hq"], "wg", "show", hq.wireguard.name, "allowed-ips").stdout
    assert f"{cloud.wireguard.public_key}\t100.64.0.2/32 10.20.2.0/24" in allowed
    v6 = any(r.prefix.version == 6 for r in hq.routes)
    assert v6 == (wg_mtu >= 1280)
    l3 = [("10.20.1.10", "10.20.2.10")] + [("2001:db8:20:1::10", "2001:db8:20:2::10")] * v6
    for a, b in l3:
        eventually(f"ping {a} -> {b}", lambda b=b: _ping(hosts.l3["hq"], b))
        assert both_ways(hosts.l3["hq"], hosts.l3["cloud"], b), f"TCP {a} <-> {b}"

    # Stretched: hosts on one Ethernet segment, IPv4 and IPv6.
    for a, b in zip(L2_HOST["hq"], L2_HOST["cloud"], strict=True):
        eventually(f"ping {a} -> {b}", lambda b=b: _ping(hosts.l2["hq"], b))
        assert both_ways(hosts.l2["hq"], hosts.l2["cloud"], b), f"TCP {a} <-> {b}"

    spaces = [*lab.netns.values(), *hosts.l2.values(), *hosts.l3.values()]
    assert {ns: frag_counters(ns) for ns in spaces} == {
        ns: dict.fromkeys(frag_counters(ns), 0) for ns in spaces
    }
    # Nothing to change on a second apply, the clamp included.
    for site, plan in plans.items():
        with Ovsdb(hosts.switches[site].remote) as db:
            again = apply_site(
                plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir, switch=db
            )
        assert again.changes == ()


@pytest.mark.parametrize("lab", [config(1500)], ids=["1500"], indirect=True)
def test_without_the_clamp_l2_tcp_hangs(lab: Lab, hosts: Hosts) -> None:
    plans = {site: lab.plan(site) for site in lab.netns}
    for site, plan in plans.items():
        with Ovsdb(hosts.switches[site].remote) as db:
            apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir, switch=db)
    b = L2_HOST["cloud"][0]
    eventually(f"ping {b}", lambda: _ping(hosts.l2["hq"], b))
    for ns in lab.netns.values():
        in_ns(ns, "nft", "delete", "table", "netdev", mss.clamp_table(_site(lab, ns)))
    assert transfer(hosts.l2["hq"], hosts.l2["cloud"], b) == (0, 0)
    # Each site clamps the SYNs leaving it, which sets what the other end sends: both
    # directions need both sites.
    for site, plan in plans.items():
        with Ovsdb(hosts.switches[site].remote) as db:
            again = apply_site(
                plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir, switch=db
            )
        assert any(c.startswith("clamped TCP MSS") for c in again.changes)
    assert both_ways(hosts.l2["hq"], hosts.l2["cloud"], b)


def _site(lab: Lab, ns: str) -> str:
    return next(site for site, n in lab.netns.items() if n == ns)


def _ping(ns: str, address: str) -> bool:
    return in_ns(ns, "ping", "-n", "-c", "1", "-W", "1", address, check=False).returncode == 0


@pytest.mark.parametrize("lab", [config(1500)], ids=["1500"], indirect=True)
def test_a_moved_prefix_converges_with_nothing_stale(lab: Lab) -> None:
    for site in lab.netns:
        apply_site(lab.plan(site), netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
    # cloud's 10.20.2.0/24 moves to hq; cloud announces 10.20.3.0/24 instead.
    moved = loads(
        config(1500)
        .replace("hq: [10.20.1.0/24", "hq: [10.20.1.0/24, 10.20.2.0/24")
        .replace("cloud: [10.20.2.0/24", "cloud: [10.20.3.0/24")
    )
    plans = {site: lab.plan(site, moved) for site in lab.netns}
    changes = {
        site: apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir).changes
        for site, plan in plans.items()
    }
    wg = {site: plan.wireguard.name for site, plan in plans.items()}
    assert "removed route 10.20.2.0/24" in changes["hq"]
    assert f"routed 10.20.3.0/24 (apps) to cloud via {wg['hq']}" in changes["hq"]
    assert f"routed 10.20.2.0/24 (apps) to hq via {wg['cloud']}" in changes["cloud"]

    def routes(site: str) -> set[str]:
        shown = in_ns(lab.netns[site], "ip", "-j", "route", "show", "proto", "77").stdout
        return {f"{r['dst']} {r['dev']}" for r in json.loads(shown)}

    assert routes("hq") == {f"10.20.3.0/24 {wg['hq']}"}
    assert routes("cloud") == {f"10.20.1.0/24 {wg['cloud']}", f"10.20.2.0/24 {wg['cloud']}"}
    allowed = in_ns(lab.netns["hq"], "wg", "show", wg["hq"], "allowed-ips").stdout
    assert "10.20.2.0/24" not in allowed and "10.20.3.0/24" in allowed
    clamps = in_ns(lab.netns["hq"], "nft", "list", "table", "inet", mss.clamp_table("hq")).stdout
    assert "10.20.3.0/24" in clamps and "10.20.2.0/24" not in clamps
    for site, plan in plans.items():
        again = apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
        assert again.changes == ()
