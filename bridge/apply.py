"""Make a site's namespace match its `SitePlan`, and take it away again.

`apply_site` changes only what differs (re-applying changes nothing; a changed plan
converges) and returns what it changed. Every link it creates carries the interface alias
`overcast-bridge:<site>`, so ownership is recorded on the kernel objects themselves:
links from an older plan are found and removed, and `remove_site` works after a crash.

    keys = KeyStore(Path("/etc/overcast/keys"))
    plan = plan_site(config, "hq", keys.ensure_all(config.sites), prefix="oc")
    applied = apply_site(plan, netns="oc-hq", keys=keys, run_dir=Path("/run/overcast/hq"))
    ...
    remove_site(plan, netns="oc-hq", run_dir=Path("/run/overcast/hq"))
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bridge import isolation, mss, portguard, wireguard
from bridge.keys import KeyStore, KeyStoreError, public_key_of
from bridge.netns import NETNS_DIR, ApplyError, require_netns, run
from bridge.plan import SitePlan, VxlanTunnel, WireGuardInterface

if TYPE_CHECKING:
    from controller.ovsdb import Ovsdb

Backend = Literal["kernel", "wireguard-go"]
_IFF_UP = 0x1
# The routing protocol number our routes carry, so they are told from anyone else's and
# stale ones are found: unassigned in iproute2's rt_protos (rtnetlink.h RTPROT_*).
RTPROT_OVERCAST = 77
_MAIN_TABLE = 254
_FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


@dataclass(frozen=True)
class AppliedSite:
    """What `apply_site` left in place, and what it had to change to get there."""

    site: str
    netns: str
    backend: Backend
    wireguard_pid: int | None  # the first wireguard-go's PID; None with the kernel module
    links: tuple[str, ...]  # every link the plan owns in the namespace
    changes: tuple[str, ...]  # empty when everything already matched the plan


def owner_alias(site: str) -> str:
    return f"overcast-bridge:{site}"


def guard_table(site: str) -> str:
    """The nftables table guarding the switch ports `apply_site` made for `site`."""
    return portguard.guard_table(f"bridge-{site}")


def apply_site(
    plan: SitePlan,
    *,
    netns: str,
    keys: KeyStore,
    run_dir: Path,
    switch: Ovsdb | None = None,
) -> AppliedSite:
    """Build `plan` in the named namespace `netns`.

    The private key comes from `keys` and must match the plan's public key. `run_dir`
    holds wireguard-go's PID and log files. With `switch` (an OVSDB connection to the
    site's ovsdb-server), the VXLAN devices are added as ports of `plan.switch`, which
    must already exist; they and every other port of the switch (an operator's access
    ports) get no IPv6, and on a userspace switch the site's kernel is kept off them
    (`bridge.portguard`); its internal ports stay the kernel's. Ports added to the switch
    later are guarded by the next apply; until then `port_guards` shows them unguarded.
    """
    require_netns(netns)
    try:
        private_key = keys.private_key(plan.site)
    except KeyStoreError as exc:
        raise ApplyError(str(exc)) from None
    if public_key_of(private_key) != plan.wireguard.public_key:
        raise ApplyError(
            f"the private key in {keys.private_key_file(plan.site)} does not belong to the "
            f"plan's public key for {plan.site}; plan again with this key store's public keys"
        )
    if switch is not None and plan.switch not in switch.bridges():
        # Checked before any change, so a missing bridge never leaves a half-built site.
        raise ApplyError(
            f"OVS bridge {plan.switch} does not exist; create it first (ovs-vsctl add-br "
            f"{plan.switch}) or leave out --ovsdb; nothing was changed"
        )
    alias = owner_alias(plan.site)
    changes: list[str] = []
    backend: Backend = "kernel"
    pid: int | None = None
    for wg in plan.wireguard_interfaces:
        with IPRoute(netns=netns, flags=0) as ipr:
            backend, wg_pid = _ensure_wireguard_link(ipr, wg.name, netns, run_dir, changes)
            pid = pid if pid is not None else wg_pid
            index = _index(ipr, wg.name)
            _ensure_link_state(ipr, index, wg.name, wg.mtu, alias, changes)
            _ensure_address(ipr, index, wg, netns, changes)
        if not wireguard.matches(wireguard.show(netns, wg.name), wg, private_key):
            wireguard.set_config(netns, wg.name, wireguard.render(wg, private_key))
            changes.append(f"configured {wg.name}: {len(wg.peers)} peer(s), port {wg.listen_port}")
    # Before the site forwards anything: never a moment when routed segments meet.
    isolation.ensure_isolation(netns, plan, changes)
    _ensure_forwarding(netns, {r.prefix.version for r in plan.routes}, changes)
    with IPRoute(netns=netns, flags=0) as ipr:
        _ensure_routes(ipr, plan, netns, changes)
    wg_names = {wg.name for wg in plan.wireguard_interfaces}
    wanted = {t.name: t for t in plan.vxlan_devices()}
    with IPRoute(netns=netns, flags=0) as ipr:
        stale = [n for n in _owned(ipr, alias) if n not in wg_names and n not in wanted]
        if switch is not None:
            _detach(switch, plan.switch, stale, changes)
        for name in stale:
            _delete(ipr, name, netns, changes)
        for tunnel in wanted.values():
            _ensure_vxlan(ipr, tunnel, netns, changes)
        # The tunnels about to join as system ports, and every other port of the switch:
        # an operator's access ports too, but not the kernel's own (internal) ports.
        ports = (
            portguard.switch_ports(_switch_ports(ipr, switch, plan.switch, wanted))
            if switch is not None
            else []
        )
    if switch is not None:
        # While new tunnels are still down: not one router solicitation or MLD report.
        portguard.disable_ipv6(netns, ports, changes)
    with IPRoute(netns=netns, flags=0) as ipr:
        for t in wanted.values():
            _ensure_link_state(ipr, _index(ipr, t.name), t.name, t.mtu, alias, changes)
    # Before the tunnels join the switch, so no SYN crosses unclamped.
    mss.ensure_clamp(netns, plan, changes)
    if switch is not None:
        userspace = portguard.needs_guard(switch.datapath_type(plan.switch))
        # Guarded before they join the switch, so the kernel never sees a switched frame.
        portguard.ensure_guard(netns, guard_table(plan.site), ports if userspace else (), changes)
        _attach(switch, plan.switch, list(wanted.values()), changes)
    return AppliedSite(
        site=plan.site,
        netns=netns,
        backend=backend,
        wireguard_pid=pid,
        links=(*(wg.name for wg in plan.wireguard_interfaces), *wanted),
        changes=tuple(changes),
    )


def port_guards(plan: SitePlan, *, netns: str, switch: Ovsdb) -> tuple[portguard.PortGuard, ...]:
    """Every interface of the site's switch with its type and role, whether the site's
    kernel should be kept off it and whether it is: ports added since the last
    `apply_site` are unguarded until the next."""
    with IPRoute(netns=netns, flags=0) as ipr:
        ports = _switch_ports(ipr, switch, plan.switch)
    datapath = switch.datapath_type(plan.switch)
    return portguard.audit(ports, datapath, portguard.guarded_now(netns, guard_table(plan.site)))


def remove_site(
    plan: SitePlan, *, netns: str, run_dir: Path, switch: Ovsdb | None = None
) -> tuple[str, ...]:
    """Remove everything `apply_site` made for `plan.site`; return what was removed.

    Safe to call twice, after a crash, or after the namespace is gone (then only
    wireguard-go and its socket are left to clean up).
    """
    removed: list[str] = []
    alive = (NETNS_DIR / netns).exists()
    names: list[str] = []
    if alive:
        with IPRoute(netns=netns, flags=0) as ipr:
            # The plan's own names too: a crash may have come before the alias was set.
            wg_names = [wg.name for wg in plan.wireguard_interfaces]
            planned = [*wg_names, *(t.name for t in plan.vxlan_devices())]
            present = [n for n in planned if ipr.link_lookup(ifname=n)]
            names = sorted({*_owned(ipr, owner_alias(plan.site)), *present})
    interfaces = {wg.name for wg in plan.wireguard_interfaces}
    if switch is not None:
        _detach(switch, plan.switch, [n for n in names if n not in interfaces], removed)
    for name in sorted(interfaces):
        if wireguard.stop_wireguard_go(name, run_dir):
            removed.append(f"stopped wireguard-go for {name}")
    if alive:
        with IPRoute(netns=netns, flags=0) as ipr:
            for name in names:
                if ipr.link_lookup(ifname=name):
                    _delete(ipr, name, netns, removed)
        # Last: until its ports are gone, a switch may still read them.
        portguard.remove_guard(netns, guard_table(plan.site), removed)
        if shutil.which("nft") is not None:
            mss.remove_clamp(netns, plan.site, removed)
            isolation.remove_isolation(netns, plan.site, removed)
    return tuple(removed)


# -- WireGuard interface -----------------------------------------------------------------


def backend_of(name: str, kind: str | None) -> Backend | None:
    """What serves WireGuard interface `name` (a link of `kind`): the kernel module, a
    live wireguard-go, or nothing (None)."""
    if kind == "wireguard":
        return "kernel"
    if kind == "tun" and wireguard.uapi_answers(name):
        return "wireguard-go"
    return None


def wireguard_links(netns: str, names: Iterable[str]) -> dict[str, tuple[Backend | None, int]]:
    """Each present link of `names` in `netns`: its backend and MTU."""
    found = {}
    with IPRoute(netns=netns, flags=0) as ipr:
        for name in names:
            link = _link(ipr, name)
            if link is not None:
                found[name] = (backend_of(name, _kind(link)), int(link.get("IFLA_MTU")))
    return found


def _ensure_wireguard_link(
    ipr: IPRoute, name: str, netns: str, run_dir: Path, changes: list[str]
) -> tuple[Backend, int | None]:
    link = _link(ipr, name)
    if link is not None:
        kind = _kind(link)
        backend = backend_of(name, kind)
        if backend is not None:
            pid = wireguard.wireguard_go_pid(name, run_dir) if backend == "wireguard-go" else None
            return backend, pid
        raise ApplyError(
            f"namespace {netns} already has a link {name} ({kind or 'unknown kind'}) that is "
            f"not a live WireGuard interface; remove it (ip -n {netns} link del {name}) or "
            "use another interface prefix"
        )
    # Detect, don't assume: the kernel refuses an unknown link kind with EOPNOTSUPP.
    try:
        ipr.link("add", ifname=name, kind="wireguard")
    except NetlinkError as exc:
        if exc.code != errno.EOPNOTSUPP:
            raise _error(exc, f"creating WireGuard interface {name}", netns) from None
    else:
        changes.append(f"created {name} (kernel WireGuard)")
        return "kernel", None
    pid = wireguard.start_wireguard_go(netns, name, run_dir)
    changes.append(f"started wireguard-go for {name} (pid {pid})")
    return "wireguard-go", pid


def _ensure_address(
    ipr: IPRoute, index: int, wg: WireGuardInterface, netns: str, changes: list[str]
) -> None:
    want = (str(wg.address), wg.prefixlen)
    have = {
        (a.get("IFA_ADDRESS"), a["prefixlen"])
        for a in ipr.get_addr(index=index)
        if not str(a.get("IFA_ADDRESS")).startswith("fe80:")  # the kernel's link-local
    }
    for address, prefixlen in have - {want}:
        ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
        changes.append(f"removed {address}/{prefixlen} from {wg.name}")
    if want not in have:
        try:
            ipr.addr("add", index=index, address=want[0], prefixlen=want[1])
        except NetlinkError as exc:
            raise _error(exc, f"adding {want[0]}/{want[1]} to {wg.name}", netns) from None
        changes.append(f"added {want[0]}/{want[1]} to {wg.name}")


# -- routed (L3) prefixes ------------------------------------------------------------------


def _ensure_routes(ipr: IPRoute, plan: SitePlan, netns: str, changes: list[str]) -> None:
    """Every prefix other sites announce routed into the WireGuard interface of its path
    (AllowedIPs pick the peer); routes of ours the plan no longer has are removed,
    wherever they point, so a prefix that moved to another site leaves nothing stale."""
    want = {r.prefix: (r, _index(ipr, r.interface)) for r in plan.routes}
    # A route the path watcher moved to another of the prefix's paths is where it belongs.
    movable = {r.prefix: {_index(ipr, i) for i in r.interfaces} for r in plan.routes}
    have: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.get_routes(family=family, table=_MAIN_TABLE):
            if route["proto"] == RTPROT_OVERCAST:
                net = ipaddress.ip_network(f"{route.get('RTA_DST')}/{route['dst_len']}")
                have[net] = int(route.get("RTA_OIF") or 0)
    for net, oif in have.items():
        if net in want and oif in movable[net]:
            have[net] = want[net][1]  # leave it be
        elif net not in want or oif != want[net][1]:
            ipr.route("del", dst=str(net), oif=oif, proto=RTPROT_OVERCAST)
            changes.append(f"removed route {net}")
            have[net] = 0
    for net, (r, index) in want.items():
        if have.get(net) == index:
            continue
        try:
            ipr.route("add", dst=str(net), oif=index, proto=RTPROT_OVERCAST)
        except NetlinkError as exc:
            fix = "remove the route that is in the way (ip route) or the prefix from the config"
            raise _error(exc, f"routing {net} into {r.interface}", netns, fix) from None
        changes.append(f"routed {net} ({r.segment}) to {r.peer} via {r.interface}")


def _ensure_forwarding(netns: str, families: set[int], changes: list[str]) -> None:
    """A site that routes prefixes forwards between its LANs and the tunnel. Left on at
    removal: the namespace's other routes may rely on it."""
    for family in sorted(families):
        key = _FORWARDING[family]
        fix = "check that procps (sysctl) is installed and run as root"
        if run(netns, ["sysctl", "-n", key], what=f"reading {key}", fix=fix).strip() != "1":
            run(netns, ["sysctl", "-qw", f"{key}=1"], what=f"setting {key}", fix=fix)
            changes.append(f"enabled IPv{family} forwarding ({key}=1)")


# -- VXLAN tunnels -----------------------------------------------------------------------


def _vxlan_attrs(t: VxlanTunnel) -> dict[str, Any]:
    six = "6" if t.remote.version == 6 else ""
    return {
        "IFLA_VXLAN_ID": t.vni,
        f"IFLA_VXLAN_GROUP{six}": str(t.remote),
        f"IFLA_VXLAN_LOCAL{six}": str(t.local),
        "IFLA_VXLAN_PORT": t.dstport,
        # Point-to-point with a controller that knows where MACs are: no kernel learning.
        "IFLA_VXLAN_LEARNING": 0,
    }


def _ensure_vxlan(ipr: IPRoute, t: VxlanTunnel, netns: str, changes: list[str]) -> None:
    """The VXLAN device as planned; a new one is left down (the caller sets its state)."""
    want = _vxlan_attrs(t)
    link = _link(ipr, t.name)
    if link is not None:
        data = link.get("IFLA_LINKINFO").get("IFLA_INFO_DATA") if _kind(link) == "vxlan" else None
        if data is not None and all(data.get(k) == v for k, v in want.items()):
            return
        # VNI, addresses and port cannot be changed on a live VXLAN device: replace it.
        _delete(ipr, t.name, netns, changes)
    try:
        ipr.link(
            "add",
            ifname=t.name,
            kind="vxlan",
            **{k.removeprefix("IFLA_").lower(): v for k, v in want.items()},
        )
    except NetlinkError as exc:
        fix = (
            f"another VXLAN device in the namespace already uses VNI {t.vni} on UDP port "
            f"{t.dstport}; remove it or change bridge.vxlan_port_base"
            if exc.code == errno.EEXIST
            else ""
        )
        raise _error(exc, f"creating VXLAN device {t.name} to {t.peer}", netns, fix) from None
    changes.append(f"created {t.name}: VNI {t.vni} to {t.peer} ({t.remote}) port {t.dstport}")


# -- the site's switch -------------------------------------------------------------------
# controller.ovsdb owns OVSDB; the bridge only reads and changes ports through it.


def _attach(switch: Ovsdb, bridge: str, tunnels: list[VxlanTunnel], changes: list[str]) -> None:
    present = set(switch.ports(bridge))
    for t in tunnels:
        # A path to a peer with others gets BFD, which the fast-failover groups watch.
        switch.ensure_port(bridge, t.name, bfd=t.bfd)
        if t.name not in present:
            changes.append(f"added port {t.name} to {bridge}" + (" with BFD" if t.bfd else ""))


def _switch_ports(
    ipr: IPRoute, switch: Ovsdb, bridge: str, joining: Iterable[str] = ()
) -> tuple[portguard.SwitchPort, ...]:
    """The switch's interfaces, and the devices `joining` it as system ports, classified."""
    links = (str(link.get("IFLA_IFNAME")) for link in ipr.get_links())
    interfaces = switch.interfaces(bridge) | dict.fromkeys(joining, "")
    return portguard.classify(bridge, interfaces, links)


def _detach(switch: Ovsdb, bridge: str, names: list[str], changes: list[str]) -> None:
    if bridge not in switch.bridges():
        return
    present = set(switch.ports(bridge))
    for name in names:
        if name in present:
            switch.remove_port(bridge, name)
            changes.append(f"removed port {name} from {bridge}")


# -- links -------------------------------------------------------------------------------


def _link(ipr: IPRoute, name: str) -> Any:
    indexes = ipr.link_lookup(ifname=name)
    return ipr.get_links(indexes[0])[0] if indexes else None


def _index(ipr: IPRoute, name: str) -> int:
    return int(ipr.link_lookup(ifname=name)[0])


def _kind(link: Any) -> str | None:
    info = link.get("IFLA_LINKINFO")
    return info.get("IFLA_INFO_KIND") if info is not None else None


def _owned(ipr: IPRoute, alias: str) -> list[str]:
    return sorted(
        str(link.get("IFLA_IFNAME"))
        for link in ipr.get_links()
        if link.get("IFLA_IFALIAS") == alias
    )


def _ensure_link_state(
    ipr: IPRoute, index: int, name: str, mtu: int, alias: str, changes: list[str]
) -> None:
    link = ipr.get_links(index)[0]
    update: dict[str, Any] = {}
    if link.get("IFLA_MTU") != mtu:
        update["mtu"] = mtu
    if link.get("IFLA_IFALIAS") != alias:
        update["ifalias"] = alias
    if not link["flags"] & _IFF_UP:
        update["state"] = "up"
    if update:
        ipr.link("set", index=index, **update)
        changes.append(f"set {name} " + ", ".join(f"{k} {v}" for k, v in update.items()))


def _delete(ipr: IPRoute, name: str, netns: str, changes: list[str]) -> None:
    try:
        ipr.link("del", ifname=name)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise _error(exc, f"deleting {name}", netns) from None
    changes.append(f"deleted {name}")


def _error(exc: NetlinkError, what: str, netns: str, fix: str = "") -> ApplyError:
    reason = os.strerror(exc.code) if exc.code else str(exc)
    return ApplyError(
        f"{what} in namespace {netns} failed: {reason}; "
        f"{fix or 'check the link with ip -d -n ' + netns + ' link and run as root'}"
    )
