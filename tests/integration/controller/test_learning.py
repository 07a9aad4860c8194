"""Issue #10 on real switches: no fabric file, learning distributed to every site, and no
packet-ins in steady state.

Three userspace OVS, each in its own namespace, in a full mesh of veth "tunnels" named as
the bridge plan names VXLAN ports (vx<vni>-<peer index>), so the controller derives the
whole fabric: access ports from the config (hq, branch) and from an OVSDB tag (cloud's
port, added while the controller runs, as a hypervisor adds a VM's port). Hosts have MACs
that are in no config.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.ovsdb import Ovsdb
from tests.conftest import require_binaries
from tests.integration.controller.netns import (
    ControllerProcess,
    Namespaces,
    OvsSwitch,
    connect,
    controller,
    ping,
    sh,
    switch_mesh,
    unique_prefix,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

SITES = ("hq", "branch", "cloud")
HOST_PORT = "hfin"
METRICS, API = "127.0.0.1:9312", "127.0.0.1:9313"


def _config(bridge: str) -> str:
    switch = f"bridge: {bridge}, access: {{{HOST_PORT}: finance}}"
    return f"""
sites:
  hq:     {{role: enterprise, underlay: 192.0.2.1, switch: {{{switch}}}}}
  branch: {{role: enterprise, underlay: 192.0.2.2, switch: {{{switch}}}}}
  cloud:  {{role: provider,   underlay: 192.0.2.3, switch: {{bridge: {bridge}}}}}
segments:
  finance: {{mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}}
controller:
  acls:
    finance:
      default: allow
      rules: [{{action: deny, ip_proto: tcp, dst_port: 23}}]
"""


def mac(i: int) -> str:  # in no config: learned
    return f"02:00:00:00:0a:{i + 1:02x}"


def address(i: int) -> str:
    return f"192.0.2.{21 + i}"


@dataclass
class Mesh:
    switches: dict[str, OvsSwitch]
    bridge: str
    hosts: dict[str, str]  # site -> host namespace
    ctl: ControllerProcess
    namespaces: Namespaces
    prefix: str

    def tx(self, site: str, port: str) -> int:
        dump = self.switches[site].ofctl("dump-ports", self.bridge, port)
        found = re.search(r"tx pkts=(\d+)", dump)
        assert found, dump
        return int(found.group(1))

    def api(self, path: str, method: str = "GET") -> tuple[int, Any]:
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            f"req = urllib.request.Request('http://{API}{path}', method='{method}')\n"
            "try:\n    r = urllib.request.urlopen(req); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
        )
        status, _, body = sh(sys.executable, "-c", script, netns=self.ctl.netns).partition("\n")
        return int(status), json.loads(body)

    def metric(self, name: str) -> float:
        script = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
        text = sh(sys.executable, "-c", script, netns=self.ctl.netns)
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def tunnel(peer: str) -> str:
    return f"vx100-{SITES.index(peer)}"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-ofctl", "ethtool", "ping")
    prefix, namespaces = unique_prefix(), Namespaces()
    switches: dict[str, OvsSwitch] = {}
    try:
        ctl_ns, bridge, targets = switch_mesh(namespaces, prefix, SITES, switches, tunnel)
        hosts = {}
        for i, site in enumerate(("hq", "branch")):
            sw = switches[site]
            hosts[site] = namespaces.host(
                f"{prefix}-h{i}", sw.netns, HOST_PORT, mac(i), f"{address(i)}/24"
            )
            with Ovsdb(sw.remote) as db:
                db.ensure_port(bridge, HOST_PORT)
        ovsdb = [f"--ovsdb={site}={sw.remote}" for site, sw in switches.items()]
        workdir = tmp_path_factory.mktemp("learning")
        extra = ("--metrics", METRICS, "--api", API, "--audit", "1", *ovsdb)
        with controller(ctl_ns, _config(bridge), None, workdir, "0.0.0.0:6653", *extra) as ctl:
            connect(switches, bridge, targets)
            ctl.wait_log("programmed (full)", "every switch to be programmed", count=len(SITES))
            yield Mesh(switches, bridge, hosts, ctl, namespaces, prefix)
            log = ctl.log.read_text()
            assert "Traceback" not in log and "drifted" not in log, log
    finally:
        for sw in switches.values():
            sw.close()
        namespaces.close()


def test_a_port_tagged_in_ovsdb_later_is_picked_up_without_a_restart(mesh: Mesh) -> None:
    cloud = mesh.switches["cloud"]
    port = f"{mesh.prefix}vm"
    mesh.hosts["cloud"] = mesh.namespaces.host(
        f"{mesh.prefix}-h2", cloud.netns, port, mac(2), f"{address(2)}/24"
    )
    with Ovsdb(cloud.remote) as db:
        db.ensure_port(mesh.bridge, port)
        db.set_external_id(port, "overcast-segment", "finance")
    wait_for(
        lambda: f"in_port={port}" in cloud.ofctl("dump-flows", mesh.bridge, "--names"),
        "the tagged port to be programmed",
    )
    assert ping(mesh.hosts["cloud"], address(0)), mesh.ctl.log.read_text()


def test_unicast_to_a_learned_host_crosses_exactly_one_tunnel(mesh: Mesh) -> None:
    hq, branch = mesh.hosts["hq"], mesh.hosts["branch"]
    # Static neighbours: every frame below is unicast (no ARP broadcasts to muddy counts).
    sh("ip", "neigh", "replace", address(1), "lladdr", mac(1), "dev", "eth0", netns=hq)
    sh("ip", "neigh", "replace", address(0), "lladdr", mac(0), "dev", "eth0", netns=branch)
    # Each host's first frame: it is learned, at its site and everywhere else.
    ping(branch, address(0), count=1)
    wait_for(
        lambda: mac(0) in mesh.switches["branch"].ofctl("dump-flows", mesh.bridge),
        "hq's host to be installed at branch",
    )
    wait_for(
        lambda: mac(1) in mesh.switches["hq"].ofctl("dump-flows", mesh.bridge),
        "branch's host to be installed at hq",
    )
    wait_for(
        lambda: mac(1) in mesh.switches["cloud"].ofctl("dump-flows", mesh.bridge),
        "branch's host to be installed at cloud",
    )
    before = {
        "to branch": mesh.tx("hq", tunnel("branch")),
        "to cloud": mesh.tx("hq", tunnel("cloud")),
        "cloud's host": mesh.tx("cloud", f"{mesh.prefix}vm"),
        "packet-ins": mesh.metric("overcast_controller_packet_ins_total"),
    }
    assert ping(hq, address(1), count=10)
    after = {
        "to branch": mesh.tx("hq", tunnel("branch")),
        "to cloud": mesh.tx("hq", tunnel("cloud")),
        "cloud's host": mesh.tx("cloud", f"{mesh.prefix}vm"),
        "packet-ins": mesh.metric("overcast_controller_packet_ins_total"),
    }
    assert after["to branch"] - before["to branch"] >= 10
    assert after["to cloud"] == before["to cloud"], "unicast crossed the tunnel to cloud"
    assert after["cloud's host"] == before["cloud's host"], "unicast reached cloud's host"
    # Steady state: every host is known, so the switches asked the controller nothing.
    assert after["packet-ins"] == before["packet-ins"]
    assert mesh.metric('overcast_controller_learned_macs{segment="finance"}') >= 2


SERVER = """
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"hello"); c.close()
for p in (23, 24):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait(120)
"""


def _connects(netns: str, address: str, port: int) -> bool:
    script = (
        "import socket\n"
        f"s = socket.create_connection(({address!r}, {port}), timeout=2)\n"
        "print(s.recv(5).decode())"
    )
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", script]
    return (
        subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() == "hello"
    )


def test_the_segment_acl_holds_on_the_wire_and_the_api_counts_it(mesh: Mesh) -> None:
    hq, branch = mesh.hosts["hq"], mesh.hosts["branch"]
    server = subprocess.Popen(["ip", "netns", "exec", hq, sys.executable, "-c", SERVER])
    try:
        wait_for(lambda: _connects(branch, address(0), 24), "the test server to answer on 24")
        assert not _connects(branch, address(0), 23), "the ACL let telnet through"
    finally:
        server.kill()
        server.wait(timeout=10)

    def denied() -> int:
        status, body = mesh.api("/acls")
        assert status == 200
        return sum(body["segments"]["finance"]["rules"][0]["packets"].values())

    wait_for(lambda: denied() >= 1, "the deny rule's hits to show in the API (audit: 1 s)")
    status, switches = mesh.api("/switches")
    assert status == 200
    assert {s["site"]: (s["connected"], s["programmed"]) for s in switches} == {
        site: (True, True) for site in SITES
    }
    status, macs = mesh.api("/macs")
    learned = {(m["mac"], m["site"]) for m in macs if m["kind"] == "learned"}
    assert {(mac(0), "hq"), (mac(1), "branch")} <= learned
    assert all(m["age_seconds"] >= 0 for m in macs if m["kind"] == "learned")
    status, flows = mesh.api("/flows")
    assert flows["hq"]["acl"] == 4  # deny for IPv4 and IPv6, the default, the table miss
    status, one = mesh.api("/flows?site=hq")
    assert any("table=acl" in f["flow"] for f in one["flows"])
    status, segments = mesh.api("/segments")
    assert segments[0]["name"] == "finance" and segments[0]["acl_default"] == "allow"
    assert mesh.api("/flows?site=nowhere")[0] == 404
    assert mesh.api("/nothing")[0] == 404
    assert mesh.api("/macs", method="POST")[0] == 405


# Sends one ARP request and one neighbour solicitation from a host's eth0 (AF_PACKET, as
# any host's stack would put them on the wire) and prints what came back, checked.
ASK = r"""
import ipaddress, json, socket, struct, sys, time
mac, ip4, ip6, want4, want6 = sys.argv[1:6]
own = bytes.fromhex(mac.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("eth0", 0))
def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total
arp = (b"\xff" * 6 + own + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + own
       + ipaddress.IPv4Address(ip4).packed + bytes(6) + ipaddress.IPv4Address(want4).packed)
target = ipaddress.IPv6Address(want6).packed
group = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + target[13:]
src6 = ipaddress.IPv6Address(ip6).packed
icmp = struct.pack("!BBHI", 135, 0, 0, 0) + target + b"\x01\x01" + own
pseudo = src6 + group + struct.pack("!IxxxB", len(icmp), 58)
icmp = icmp[:2] + struct.pack("!H", 0xFFFF - checksum(pseudo + icmp)) + icmp[4:]
ns = (b"\x33\x33" + group[12:] + own + b"\x86\xdd" + struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255)
      + src6 + group + icmp)
s.send(arp); s.send(ns)
out = {}
s.settimeout(0.2)
deadline = time.monotonic() + 3
while time.monotonic() < deadline and len(out) < 2:
    try:
        f = s.recv(2000)
    except socket.timeout:
        continue
    if f[:6] != own:
        continue
    if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02":
        out["arp"] = {"eth_src": f[6:12].hex(":"), "sha": f[22:28].hex(":"),
            "spa": str(ipaddress.IPv4Address(f[28:32])), "tha": f[32:38].hex(":"),
            "tpa": str(ipaddress.IPv4Address(f[38:42]))}
    elif f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == 136:
        plen = struct.unpack("!H", f[18:20])[0]
        body = f[54:54 + plen]
        pseudo = f[22:38] + f[38:54] + struct.pack("!IxxxB", plen, 58)
        out["na"] = {"eth_src": f[6:12].hex(":"), "hop_limit": f[21],
            "src": str(ipaddress.IPv6Address(f[22:38])), "dst": str(ipaddress.IPv6Address(f[38:54])),
            "checksum_ok": checksum(pseudo + body) == 0xFFFF,
            "flags": body[4] >> 5, "target": str(ipaddress.IPv6Address(body[8:24])),
            "option": body[24], "tll": body[26:32].hex(":")}
print(json.dumps(out))
"""


def _quiet(mesh: Mesh, site: str, ports: list[str]) -> None:
    """Wait until nothing has left `ports` for a second (MLD reports of a new address)."""
    last: list[int] = []

    def still() -> bool:
        nonlocal last
        now = [mesh.tx(site, p) for p in ports]
        same, last = now == last, now
        if not same:
            time.sleep(1.0)
        return same

    wait_for(still, f"the tunnels at {site} to fall quiet", timeout=20)


def address6(i: int) -> str:
    return f"2001:db8::{21 + i:x}"


def test_arp_and_nd_for_a_host_at_another_site_are_answered_by_the_local_switch(
    mesh: Mesh,
) -> None:
    for i, host in enumerate((mesh.hosts["hq"], mesh.hosts["branch"], mesh.hosts["cloud"])):
        for scope in ("all", "default", "eth0"):
            # No router solicitations: only MLD reports for the new groups, then quiet.
            sh("sysctl", "-qw", f"net.ipv6.conf.{scope}.router_solicitations=0", netns=host)
            sh("sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=0", netns=host)
        sh("ip", "-6", "addr", "add", f"{address6(i)}/64", "dev", "eth0", "nodad", netns=host)
    hq, branch = mesh.hosts["hq"], mesh.hosts["branch"]
    # hq resolves cloud's host from cold caches: both tell the controller their addresses.
    sh("ip", "neigh", "flush", "dev", "eth0", netns=hq)
    assert ping(hq, address(2), count=1)
    assert ping(hq, address6(2), count=1)
    for site in ("branch", "cloud"):
        switch = mesh.switches[site]
        wait_for(
            lambda: all(
                f in switch.ofctl("dump-flows", mesh.bridge)  # noqa: B023 (waited for at once)
                for f in (f"arp_tpa={address(0)}", f"nd_target={address6(0)}")
            ),
            f"the proxy for hq's host at {site}",
        )
    tunnels = [tunnel("hq"), tunnel("cloud")]
    _quiet(mesh, "branch", tunnels)
    before = [mesh.tx("branch", t) for t in tunnels]
    argv = (mac(1), address(1), address6(1), address(0), address6(0))
    got = json.loads(sh(sys.executable, "-c", ASK, *argv, netns=branch))
    after = [mesh.tx("branch", t) for t in tunnels]
    assert got["arp"] == {
        "eth_src": mac(0),
        "sha": mac(0),
        "spa": address(0),
        "tha": mac(1),
        "tpa": address(1),
    }
    assert got["na"] == {
        "eth_src": mac(0),
        "hop_limit": 255,
        "src": address6(0),
        "dst": address6(1),
        "checksum_ok": True,
        "flags": 0b011,  # RFC 4861 section 4.4: not a router, solicited, override
        "target": address6(0),
        "option": 2,  # target link-layer address
        "tll": mac(0),
    }
    assert after == before, "the request crossed a tunnel"
    # The hosts' own stacks take the answers: resolved and reachable, nothing to cloud.
    _quiet(mesh, "branch", tunnels)
    to_cloud = mesh.tx("branch", tunnel("cloud"))
    sh("ip", "neigh", "flush", "dev", "eth0", netns=branch)
    assert ping(branch, address(0), count=1) and ping(branch, address6(0), count=1)
    neighbours = sh("ip", "neigh", "show", "dev", "eth0", netns=branch)
    assert f"{address(0)} lladdr {mac(0)}" in neighbours
    assert f"{address6(0)} lladdr {mac(0)}" in neighbours
    assert mesh.tx("branch", tunnel("cloud")) == to_cloud
    _, macs = mesh.api("/macs")
    ips = {m["mac"]: m["ips"] for m in macs}
    assert {address(0), address6(0)} <= set(ips[mac(0)])
    assert mesh.metric("overcast_controller_learned_addresses") >= 4
