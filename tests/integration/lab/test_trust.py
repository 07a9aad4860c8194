"""What the README promises, shown with packets: traffic between sites is encrypted in
flight and fails closed, and segments are isolated from each other.

One lab (three sites, two L2 segments at every site), built and rebuilt through the real
CLI. Frames are captured with scapy on the underlay (every site's port on the stand-in
internet) and at the hosts, and crafted frames are injected from a host's namespace.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import NetNS
from scapy.layers.inet import ICMP, IP, UDP, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from bridge import wireguard
from bridge.keys import KeyStore
from lab import build, names, netns, switch, traffic
from lab.plan import STATE_ROOT, HostPlan, LabPlan, SitePlan
from overcast.config import OvercastConfig, loads
from tests.conftest import require_binaries
from tests.integration.lab.conftest import leftovers, overcast
from tests.integration.lab.packets import Capture, send_frames

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

CONFIG = """
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2}
  cloud-a: {role: provider,   underlay: 198.51.100.1, provider: vendor-a}
providers:
  vendor-a: {description: first cloud vendor}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud-a]}
  hr:      {mode: l2, vni: 200, vlan: 20, sites: [hq, branch, cloud-a]}
"""
# 16 bytes: what `ping -p` repeats through the payload, and what must never be seen in clear.
MARKER = b"OVERCAST-SECRET!"
# WireGuard message types and their fixed sizes (the WireGuard paper, section 5.4).
WG_HANDSHAKE_SIZES = {1: 148, 2: 92, 3: 64}
WG_TRANSPORT = 4


def lab_up(config: Path, lab_id: str) -> None:
    """`overcast lab up`: builds the lab, or checks and repairs it, and waits until every
    switch is programmed."""
    run = overcast("lab", "up", str(config), "--id", lab_id, timeout=90)
    assert run.returncode == 0, run.stderr[-2000:]


@dataclass(frozen=True)
class Lab:
    plan: LabPlan
    config: OvercastConfig
    path: Path

    def host(self, site: str, segment: str) -> HostPlan:
        return next(h for h in self.plan.hosts if h.site == site and h.segment == segment)

    def up(self) -> None:
        lab_up(self.path, self.plan.lab_id)

    def underlay(self) -> dict[str, tuple[str, str]]:
        """Capture points: each site's port on the underlay bridge."""
        return {
            f"wan/{s.name}": (self.plan.underlay_netns, names.uplink_port(s.name))
            for s in self.plan.sites
        }

    def hosts(self) -> dict[str, tuple[str, str]]:
        return {h.label: (h.netns, names.HOST_IF) for h in self.plan.hosts}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_binaries(
        "ovsdb-server", "ovs-vswitchd", "wireguard-go", "wg", "ping", "ethtool", "ss", "nft"
    )
    path = tmp_path_factory.mktemp("trust") / "overcast.yaml"
    path.write_text(CONFIG)
    valid = overcast("validate", str(path), timeout=90)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    lab_id = names.new_lab_id()
    try:
        lab_up(path, lab_id)
        config = loads(CONFIG)
        yield Lab(build.plan_of(config, lab_id), config, path)
    finally:
        build.down(STATE_ROOT / lab_id)
    assert leftovers(lab_id) == []


def ping(host: HostPlan, target: HostPlan, count: int = 5) -> traffic.PingResult:
    """`count` pings from `host` to `target`, 50 ms apart, each carrying MARKER."""
    out = netns.run(
        host.netns,
        [
            *("ping", "-c", str(count), "-i", "0.05", "-W", "1", "-s", "200"),
            *("-p", MARKER.hex(), str(target.address.ip)),
        ],
        check=False,
    )
    return traffic.parse_ping(out, host.label, target.label, count)


def carries(packet: Packet, data: bytes) -> bool:
    return data in bytes(packet)


def port_mac(ns: str, ifname: str) -> str:
    with NetNS(ns) as ipr:
        (index,) = ipr.link_lookup(ifname=ifname)
        return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


# -- what the underlay may carry -----------------------------------------------------------


def underlay_problem(
    lab: Lab, frame: Packet, icmp_from: frozenset[str] = frozenset()
) -> str | None:
    """Why `frame` must not be on the underlay, or None if it is WireGuard (or the plumbing
    any Ethernet has: ARP for the sites' underlay addresses, IPv6 link-local chatter).
    `icmp_from`: sites allowed to answer WireGuard with ICMP errors (theirs is down)."""
    sites = {str(s.underlay): s for s in lab.plan.sites}
    ports = {s.dataplane.wireguard.listen_port for s in lab.plan.sites}
    if ARP in frame:
        ok = {frame[ARP].psrc, frame[ARP].pdst} <= set(sites)
        return None if ok else f"ARP for an address that is not a site's underlay: {frame!r}"
    if IPv6 in frame:
        # Router solicitations, neighbour discovery, MLD: link-local, never site traffic.
        ok = frame[IPv6].nh in (0, 58) and frame[IPv6].src.startswith(("fe80:", "::"))
        return None if ok else f"IPv6 that is not link-local plumbing: {frame!r}"
    if IP not in frame:
        return f"a frame that is neither IP nor ARP: {frame!r}"
    ip = frame[IP]
    if not {ip.src, ip.dst} <= set(sites):
        return f"IP between addresses that are not sites' underlays: {ip.src} > {ip.dst}"
    if ICMP in ip and sites[ip.src].name in icmp_from:
        # The ICMP error quotes the start of the WireGuard datagram that found no listener.
        quoted = ip[ICMP].payload
        ok = ip[ICMP].type == 3 and UDPerror in quoted and quoted[UDPerror].dport in ports
        return None if ok else f"ICMP that is not port-unreachable for WireGuard: {frame!r}"
    if UDP not in ip or ip[UDP].sport not in ports or ip[UDP].dport not in ports:
        return f"IP that is not UDP between WireGuard ports: {frame!r}"
    return wireguard_problem(bytes(ip[UDP].payload))


def wireguard_problem(payload: bytes) -> str | None:
    """None if `payload` is a well-formed WireGuard message (type, reserved zeros, size)."""
    if len(payload) < 4 or payload[1:4] != b"\0\0\0":
        return f"UDP payload is not a WireGuard message: {payload[:16].hex()}"
    kind = payload[0]
    if kind in WG_HANDSHAKE_SIZES:
        size = WG_HANDSHAKE_SIZES[kind]
        return None if len(payload) == size else f"WireGuard type {kind} of {len(payload)} bytes"
    if kind == WG_TRANSPORT:
        # 16-byte header, then the plaintext padded to 16 bytes plus a 16-byte tag.
        ok = len(payload) >= 32 and len(payload) % 16 == 0
        return None if ok else f"WireGuard transport data of {len(payload)} bytes"
    return f"UDP payload has WireGuard type {kind}, not 1-4"


def is_transport(frame: Packet) -> bool:
    return UDP in frame and bytes(frame[UDP].payload)[:1] == bytes([WG_TRANSPORT])


def in_clear(lab: Lab, frames: list[Packet]) -> list[str]:
    """Frames on the underlay that show the marker, a host's MAC, or VXLAN."""
    vxlan_base = lab.config.bridge.vxlan_port_base
    macs = {bytes.fromhex(h.mac.replace(":", "")): h.label for h in lab.plan.hosts}
    found = []
    for frame in frames:
        raw = bytes(frame)
        if MARKER in raw:
            found.append(f"marker in clear at {frame.sniffed_on}: {frame!r}")
        found += [f"MAC of {h} in clear: {frame!r}" for mac, h in macs.items() if mac in raw]
        if UDP in frame and vxlan_base <= frame[UDP].dport < vxlan_base + 64:
            found.append(f"VXLAN on the underlay: {frame!r}")
    return found


# -- the tests -----------------------------------------------------------------------------


def test_traffic_between_sites_is_only_wireguard_on_the_underlay(lab: Lab) -> None:
    hq, branch = lab.host("hq", "finance"), lab.host("branch", "finance")
    hq_hr, cloud_hr = lab.host("hq", "hr"), lab.host("cloud-a", "hr")
    with Capture(lab.underlay() | lab.hosts()) as capture:
        results = [ping(hq, branch, count=10), ping(hq_hr, cloud_hr, count=10)]
        frames = capture.finish()
    assert all(r.ok for r in results), results

    # The marker is plainly visible where it should be: the capture can see it.
    assert any(carries(p, MARKER) for p in capture.at(branch.label))
    assert any(carries(p, MARKER) for p in capture.at(cloud_hr.label))

    wan = [f for f in frames if str(f.sniffed_on).startswith("wan/")]
    # Each echo and reply crossed two underlay ports (out of one site, into another).
    assert sum(map(is_transport, wan)) >= 2 * 2 * 20, "the pings did not cross the underlay"
    assert [p for f in wan if (p := underlay_problem(lab, f))] == []
    assert in_clear(lab, wan) == []


def test_segments_are_isolated_against_crafted_frames(lab: Lab) -> None:
    sender = lab.host("hq", "finance")
    finance = [lab.host(s, "finance") for s in ("branch", "cloud-a")]
    hr = [lab.host(s, "hr") for s in ("hq", "branch", "cloud-a")]
    hr_segment = lab.config.l2_segments()["hr"]
    hq = lab.plan.site("hq")
    bcast = "ff:ff:ff:ff:ff:ff"

    def datagram(src: HostPlan, dst: str, tag: bytes) -> Packet:
        inner = IP(src=str(src.address.ip), dst=dst) / UDP(sport=40000, dport=40000)
        return inner / Raw(MARKER + tag)

    def vxlan(dst_mac: str, dst_ip: str, port: int, tag: bytes) -> Packet:
        """A VXLAN packet of segment hr, carrying a broadcast from hr's host at branch."""
        inner = Ether(src=hr[1].mac, dst=bcast) / datagram(hr[1], "198.19.1.255", tag)
        outer = IP(src=str(sender.address.ip), dst=dst_ip) / UDP(sport=40001, dport=port)
        return (
            Ether(src=sender.mac, dst=dst_mac)
            / outer
            / VXLAN(flags="Instance", vni=hr_segment.vni)
            / inner
        )

    nowhere = {
        # (a) another site's host's MAC as source: broadcast, and unicast to a third site.
        b"spoof-bcast": Ether(src=finance[0].mac, dst=bcast)
        / datagram(finance[0], "198.19.0.255", b"spoof-bcast"),
        b"spoof-ucast": Ether(src=finance[0].mac, dst=finance[1].mac)
        / datagram(finance[0], str(finance[1].address.ip), b"spoof-ucast"),
        # (b) segment hr's VLAN id on a frame of finance, broadcast and to a host of hr:
        # access ports are untagged and tags are not carried (bridge.inner_vlan_tag).
        b"tag-bcast": Ether(src=sender.mac, dst=bcast)
        / Dot1Q(vlan=hr_segment.vlan)
        / datagram(sender, "198.19.1.255", b"tag-bcast"),
        b"tag-ucast": Ether(src=sender.mac, dst=hr[1].mac)
        / Dot1Q(vlan=hr_segment.vlan)
        / datagram(sender, str(hr[1].address.ip), b"tag-ucast"),
    }
    outside_hr = {
        # (b) segment hr's VNI: VXLAN addressed to the site itself (its switch port's
        # MAC, its overlay address), and broadcast, which reaches the tunnel ports of the
        # other sites too, on every VXLAN port the lab uses.
        b"vni-site": vxlan(
            port_mac(hq.netns, sender.port),
            str(hq.dataplane.wireguard.address),
            next(t.dstport for t in hq.dataplane.tunnels()),
            b"vni-site",
        ),
        **{
            f"vni-{port}".encode(): vxlan(bcast, "255.255.255.255", port, f"vni-{port}".encode())
            for port in sorted({t.dstport for s in lab.plan.sites for t in s.dataplane.tunnels()})
        },
    }
    # (c) plain ARP requests for addresses nobody has: each floods its own segment only.
    asks = {sender: "198.19.0.250", hr[1]: "198.19.1.250"}

    def arp(host: HostPlan) -> Packet:
        return Ether(src=host.mac, dst=bcast) / ARP(
            op=1, hwsrc=host.mac, psrc=str(host.address.ip), pdst=asks[host]
        )

    def arp_seen(at: HostPlan, by: HostPlan) -> bool:
        return any(ARP in p and p[ARP].pdst == asks[by] for p in capture.at(at.label))

    with Capture(lab.hosts()) as capture:
        send_frames(sender.netns, names.HOST_IF, [*nowhere.values(), *outside_hr.values()])
        send_frames(sender.netns, names.HOST_IF, [arp(sender)])
        send_frames(hr[1].netns, names.HOST_IF, [arp(hr[1])])
        # Frames of one port leave in order: once the ARP is everywhere it is going, the
        # crafted frames before it have been forwarded (or dropped) too.
        assert capture.wait_for(
            lambda _: (
                all(arp_seen(h, sender) for h in finance)
                and arp_seen(hr[0], hr[1])
                and arp_seen(hr[2], hr[1])
            )
        ), "the ARP broadcasts did not reach their segment's hosts at the other sites"
        capture.finish()

    def tags(at: HostPlan) -> set[bytes]:
        return {t for p in capture.at(at.label) for t in (*nowhere, *outside_hr) if carries(p, t)}

    # The sender's own capture shows every probe left: they were really sent.
    assert tags(sender) == {*nowhere, *outside_hr}
    others = [h for h in lab.plan.hosts if h != sender]
    assert {h.label: tags(h) & set(nowhere) for h in others} == {h.label: set() for h in others}
    assert {h.label: tags(h) for h in hr} == {h.label: set() for h in hr}
    assert [h.label for h in hr if arp_seen(h, sender)] == [], "a broadcast crossed into hr"
    assert [h.label for h in finance if arp_seen(h, hr[1])] == [], "a broadcast left hr"


def stop_wireguard(site: SitePlan, how: str) -> None:
    """Take `site`'s WireGuard away: wireguard-go crashes (its interface goes with it), or
    an operator sets the interface down (wireguard-go keeps running)."""
    wg = site.dataplane.wireguard.name
    if how == "killed":
        pid = wireguard.wireguard_go_pid(wg, site.dir / "wireguard")
        assert pid is not None, f"no wireguard-go for {wg}"
        os.kill(pid, signal.SIGKILL)
        assert netns.wait_until(lambda: not netns.link_exists(site.netns, wg), 5.0)
    else:
        netns.run(site.netns, ["ip", "link", "set", wg, "down"])


@pytest.mark.parametrize("how", ["killed", "down"])
def test_a_site_without_wireguard_sends_nothing_in_clear_and_recovers(lab: Lab, how: str) -> None:
    hq, branch = lab.host("hq", "finance"), lab.host("branch", "finance")
    assert ping(hq, branch, count=2).ok, "no baseline: the sites did not reach each other"
    stop_wireguard(lab.plan.site("branch"), how)

    with Capture(lab.underlay()) as capture:
        lost = [ping(hq, branch), ping(branch, hq)]
        frames = capture.finish()
    assert [r.received for r in lost] == [0, 0], lost
    # hq still encrypts toward branch (so the capture saw the attempts); nothing else left.
    assert any(is_transport(f) and f[IP].src == str(lab.plan.site("hq").underlay) for f in frames)
    assert [p for f in frames if (p := underlay_problem(lab, f, frozenset({"branch"})))] == []
    assert in_clear(lab, frames) == []

    # `lab up` again restarts wireguard-go or sets the interface up; the first packet from
    # branch starts a fresh handshake.
    lab.up()
    assert netns.wait_until(lambda: ping(branch, hq, count=1).ok, 20.0, interval=0.2)
    assert ping(hq, branch).ok


# -- what a provider holds -----------------------------------------------------------------


def key_forms(private_key: str) -> list[bytes]:
    """The ways a WireGuard private key can be written down: base64 (wg, our files), hex
    (wireguard-go's UAPI) and the raw 32 bytes."""
    raw = base64.b64decode(private_key)
    return [private_key.encode(), raw.hex().encode(), raw]


def test_a_provider_site_holds_no_enterprise_private_key(lab: Lab) -> None:
    provider = lab.plan.site("cloud-a")
    enterprise = KeyStore(lab.plan.state_dir / build.KEYS_DIR)
    secrets = {s: key_forms(enterprise.private_key(s)) for s in ("hq", "branch")}
    own = key_forms(enterprise.private_key("cloud-a"))

    def holders(blobs: dict[str, bytes], forms: list[bytes]) -> list[str]:
        return sorted(where for where, blob in blobs.items() if any(f in blob for f in forms))

    # Everything the provider's site keeps on disk.
    files = {str(p): p.read_bytes() for p in provider.dir.rglob("*") if p.is_file()}
    own_keys = provider.dir / build.SITE_KEYS_DIR
    assert sorted(p.name for p in own_keys.iterdir()) == ["branch.pub", "cloud-a.key", "hq.pub"]
    # Every process in its namespace (wireguard-go, ovsdb-server, ovs-vswitchd): arguments
    # and environment.
    procs: dict[str, bytes] = {}
    for pid in netns.pids_in(provider.netns):
        for part in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                procs[f"/proc/{pid}/{part}"] = Path(f"/proc/{pid}/{part}").read_bytes()
    assert len(procs) >= 6, procs.keys()
    # Every row of its OVSDB.
    dump = netns.run(
        provider.netns, ["ovsdb-client", "dump", f"unix:{switch.db_socket(provider)}"]
    ).encode()
    assert b"Interface table" in dump
    blobs = files | procs | {"ovsdb": dump}
    for site, forms in secrets.items():
        assert holders(blobs, forms) == [], f"{site}'s private key is at the provider"
    # The scan does find a key where one is: the provider's own, in its own key file only.
    assert holders(blobs, own) == [str(own_keys / "cloud-a.key")]
