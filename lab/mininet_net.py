"""The Overcast network in Mininet: sites are Open vSwitch switches our controller programs,
hosts sit on segments, and WireGuard joins the sites over links that stand for provider
networks, each provider's links shaped its own way (TCLink).

Mininet gives the nodes (each in a network namespace of its own), the links, `pingall` and
its CLI. Each Overcast node then gets what a site of the netns lab has, by the same code:
its namespace is named as the lab plan names it (`ip netns attach`), and `lab.build` runs
the site's own ovsdb-server and ovs-vswitchd (userspace datapath, no kernel module), the
bridge's WireGuard (wireguard-go) and VXLAN tunnels (`bridge.apply`), and our os-ken
controller on a management network. So `overcast lab status` and `overcast lab down` see a
Mininet network like any lab, and everything it made carries its lab id.

Mininet's OVSSwitch is not used: it drives the machine's one ovs-vswitchd in the root
namespace, where neither a site's WireGuard and VXLAN devices nor a per-site switch live.

    with overcast_net(sites=3, segments=2, hosts=1) as net:
        net.pingAll()
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mininet.link import Link, TCIntf, TCLink, TCULink
from mininet.log import info
from mininet.net import Mininet
from mininet.node import Controller, Host, Node, Switch
from mininet.topo import Topo

from bridge.keys import KeyStore
from lab import build, flows, names, netns, switch, wan_emulator
from lab.plan import OPENFLOW_PORT, STATE_ROOT, HostPlan, LabPlan, RoutedHost
from lab.registry import Registry
from overcast.config import InvalidConfig, OvercastConfig, loads
from overcast.configfile import read

# What `--topo overcast` builds without a config: every site on two provider networks.
PROVIDERS = ("isp-a", "isp-b")
MAX_SITES = 8
MAX_SEGMENTS = 8
MAX_ROUTED = 8
BFD_INTERVAL_MS = 200


@dataclass(frozen=True)
class LinkShape:
    """How a provider network treats each site's access link, both ways (Mininet's TCLink:
    an HTB rate, netem delay and loss). A path between two sites crosses two access links,
    so its round-trip time is 4 x `delay`."""

    bw: float  # Mbit/s
    delay_ms: float
    loss: float  # percent

    def params(self, netem: bool) -> dict[str, Any]:
        """TCLink's parameters. Without netem, delay and loss are the provider network's
        (`lab.wan_emulator`), which forwards frames as it reads them: the senders fill in
        their checksums (txo off)."""
        if not netem:
            return {"bw": self.bw, "txo": False}
        return {"bw": self.bw, "delay": f"{self.delay_ms:g}ms"} | (
            {"loss": self.loss} if self.loss else {}
        )

    def path(self) -> tuple[float, float]:
        """One-way delay (ms) and loss (percent) between two sites: a frame leaves by two
        shaped link ends (its site's and the provider's toward the other site)."""
        return 2 * self.delay_ms, 100 * (1 - (1 - self.loss / 100) ** 2)


# The preferred provider is fast and clean; the second is slower, narrower and lossy, so a
# failover is visible in every figure. Providers past the second are shaped like it.
SHAPES = (LinkShape(bw=100, delay_ms=2, loss=0), LinkShape(bw=20, delay_ms=10, loss=0.5))


def shape_of(index: int) -> LinkShape:
    return SHAPES[min(index, len(SHAPES) - 1)]


def netem_available() -> bool:
    """Does this kernel have the netem qdisc (sch_netem)? Tried in a throwaway namespace."""
    argv = ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def generated_config(sites: int = 2, segments: int = 2, hosts: int = 1, routed: int = 0) -> str:
    """overcast.yaml for `sites` sites (s1, s2, ...) on both providers, `segments` L2
    segments (seg1, seg2, ...) stretched across all of them, `hosts` hosts per segment at
    each site, and `routed` L3 segments (routed1, ...) on every site, site i announcing
    10.<k>.<i>.0/24 of routed segment k's 10.<k>.0.0/16 (RFC 1918). Underlay addresses are
    documentation ranges (RFC 5737)."""
    for value, low, high, what in (
        (sites, 2, MAX_SITES, "sites"),
        (segments, 1, MAX_SEGMENTS, "segments"),
        (hosts, 1, 8, "hosts"),
        (routed, 0, MAX_ROUTED, "routed"),
    ):
        if not isinstance(value, int) or not low <= value <= high:
            raise ValueError(
                f"--topo overcast: {what}={value!r}; give a whole number from {low} to {high} "
                "(e.g. --topo overcast,sites=3,segments=2,hosts=1,routed=1)"
            )
    names_ = [f"s{i}" for i in range(1, sites + 1)]
    lines = ["underlays:"]
    lines += [f'  {p}: {{description: "provider network {p}"}}' for p in PROVIDERS]
    lines.append("sites:")
    lines += [
        f"  {s}: {{role: enterprise, underlay: {{{PROVIDERS[0]}: 192.0.2.{i}, "
        f"{PROVIDERS[1]}: 198.51.100.{i}}}}}"
        for i, s in enumerate(names_, start=1)
    ]
    lines.append("segments:")
    lines += [
        f"  seg{k}: {{mode: l2, vni: {100 + k}, vlan: {10 + k}, sites: [{', '.join(names_)}]}}"
        for k in range(1, segments + 1)
    ]
    for k in range(1, routed + 1):
        announce = ", ".join(f"{s}: [10.{k}.{i}.0/24]" for i, s in enumerate(names_, start=1))
        lines.append(
            f"  routed{k}: {{mode: l3, prefixes: [10.{k}.0.0/16], sites: [{', '.join(names_)}], "
            f"announce: {{{announce}}}}}"
        )
    lines.append(f"lab: {{hosts_per_segment: {hosts}}}")
    # BFD every 200 ms (a dead path is seen in 600 ms): a provider network in userspace
    # (lab.wan_emulator) on a busy machine delays single packets by 100 ms and more at times,
    # and the default 50 ms would take healthy paths down.
    lines.append(f"bridge: {{failover: {{bfd_interval_ms: {BFD_INTERVAL_MS}}}}}")
    return "\n".join(lines) + "\n"


def host_name(host: HostPlan | RoutedHost) -> str:
    """`<site>_<segment>_<n>`: Mininet's CLI reads node names as identifiers (no '-')."""
    return re.sub(r"\W", "_", f"{host.site}_{host.segment}_{host.number}")


@dataclass
class OvercastLab:
    """What every Overcast node of one Mininet network shares: the config, the lab's plan,
    its registry (everything made is written there first) and the sites' keys."""

    config: OvercastConfig
    plan: LabPlan
    registry: Registry
    keys: KeyStore
    # Our Python daemons (the controller, each site's path watcher) take seconds to start
    # on a busy machine: they start while the sites are built, and are waited for at the end.
    starting: list[Future[None]] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(default_factory=ThreadPoolExecutor)

    _controller_started: bool = False

    def start_controller(self, pid: int | None = None) -> None:
        """Our controller, on the management network, in the namespace of process `pid`
        (a Mininet node's) or in one of its own. Once."""
        if self._controller_started:
            return
        self._controller_started = True
        plan, ns = self.plan, self.plan.controller_netns
        if pid is None:
            netns.ensure(self.registry.netns(ns))
        else:
            netns.attach(self.registry.netns(ns), pid)
        netns.bridge(ns, names.MGMT_BRIDGE)
        netns.up(ns, names.MGMT_BRIDGE, plan.controller)
        # The switches retry their connection until it listens.
        self.meanwhile(build.start_controller, plan, self.registry)

    def meanwhile(self, start: Callable[..., None], *args: Any) -> None:
        self.starting.append(self._pool.submit(start, *args))

    def finish_starting(self) -> None:
        """Wait for everything `meanwhile` started; raise the first failure."""
        for future in self.starting:
            future.result()

    @classmethod
    def prepare(
        cls,
        config: OvercastConfig,
        lab_id: str,
        source: str,
        text: str,
        state_root: Path = STATE_ROOT,
    ) -> OvercastLab:
        plan, registry, keys = build.prepare(config, lab_id, source, text, state_root)
        return cls(config, plan, registry, keys)

    def down(self) -> None:
        """Remove everything the lab made (only that: its namespaces, daemons, files)."""
        build.down(self.plan.state_dir)


class OvercastTopo(Topo):  # type: ignore[misc]
    """`--topo overcast,sites=3,segments=2,hosts=1,routed=1` or `--topo
    overcast,config=overcast.yaml` (`lab_id=oc1234` to pick the lab id; default: a new one)."""

    def build(
        self,
        sites: int = 2,
        segments: int = 2,
        hosts: int = 1,
        routed: int = 0,
        config: str | None = None,
        lab_id: str | None = None,
    ) -> None:
        if config is not None:
            try:
                text = read(config)
                cfg = loads(text, source=config)
            except InvalidConfig as exc:
                # SystemExit, not an exception: mn answers those with Mininet's cleanup().
                raise SystemExit(f"{len(exc.errors)} problem(s) in {config}:\n{exc}") from None
            source = str(Path(config).resolve())
        else:
            text = generated_config(sites, segments, hosts, routed)
            source, cfg = "mininet", loads(text, source="--topo overcast")
        self.lab = lab = OvercastLab.prepare(cfg, lab_id or names.new_lab_id(), source, text)
        # The network lives as long as the Mininet process: its end takes the lab along.
        atexit.register(lab.down)
        plan = lab.plan
        taken = {*(u.name for u in plan.underlays), *(s.name for s in plan.sites)}
        clash = taken & {*map(host_name, plan.hosts), *map(host_name, plan.routed_hosts)}
        if len(taken) < len(plan.underlays) + len(plan.sites) or clash:
            raise SystemExit(
                "Mininet needs distinct node names: a site, an underlay network and a host "
                f"({', '.join(sorted(clash)) or 'a site and an underlay'}) share one; "
                "rename it in the config"
            )
        netem = netem_available()
        if not netem:
            info(
                "*** This kernel has no netem qdisc (sch_netem): each provider network's "
                "delay and loss come from lab.wan_emulator, its bandwidth from HTB\n"
            )
        base = max(s.dpid for s in plan.sites)
        for k, underlay in enumerate(plan.underlays):
            self.addSwitch(
                underlay.name,
                cls=ProviderNetwork,
                lab=lab,
                underlay=underlay.name,
                emulate=None if netem else shape_of(k),
                dpid=f"{base + k + 1:x}",
            )
        for site in plan.sites:
            self.addSwitch(
                site.name, cls=OvercastSite, lab=lab, site=site.name, dpid=f"{site.dpid:x}"
            )
            for k, network in enumerate(n.name for n in plan.underlays):
                if network in site.underlays:
                    self.addLink(
                        site.name,
                        network,
                        intfName1=plan.underlay(network).site_if,
                        intfName2=names.uplink_port(site.name),
                        cls=ProviderLink,
                        **shape_of(k).params(netem),
                    )
        prefixlen = cfg.lab.hosts.prefixlen
        for host in plan.hosts:
            # Every host in one subnet (lab.hosts), whatever its segment: only the
            # controller's segment isolation keeps hosts of two segments apart.
            self.addHost(
                host_name(host),
                cls=SegmentHost,
                ip=f"{host.address.ip}/{prefixlen}",
                mac=host.mac,
                mtu=host.mtu,
            )
            # TCULink: checksums in software on both ends (a userspace switch port).
            self.addLink(
                host_name(host),
                host.site,
                intfName1=names.HOST_IF,
                intfName2=host.port,
                cls=TCULink,
            )
        for routed_host in plan.routed_hosts:
            # On a LAN behind its site: a plain link to the site's kernel, not the switch.
            self.addHost(
                host_name(routed_host),
                cls=RoutedSegmentHost,
                ip=str(routed_host.address),
                defaultRoute=f"via {routed_host.gateway.ip}",
                ip6=routed_host.address6,
                gateway6=routed_host.gateway6,
            )
            self.addLink(
                host_name(routed_host),
                routed_host.site,
                intfName1=names.HOST_IF,
                intfName2=routed_host.port,
            )


class _ShapedIntf(TCIntf):  # type: ignore[misc]
    def tc(self, cmd: str, tc: str = "tc") -> str:
        # HTB's hint for rates over ~16 Mbit/s (r2q): harmless, and Mininet prints any tc
        # output as an error.
        out: str = super().tc(cmd, tc)
        return "\n".join(line for line in out.splitlines() if "quantum of class" not in line)


class ProviderLink(TCLink):  # type: ignore[misc]
    """A site's access link to a provider network: TCLink, shaped on both ends."""

    def __init__(self, node1: Node, node2: Node, **params: Any) -> None:
        ends = {k: params.pop(k) for k in list(params) if k[:-1] in ("port", "intfName", "addr")}
        Link.__init__(
            self,
            node1,
            node2,
            cls1=_ShapedIntf,
            cls2=_ShapedIntf,
            params1=params,
            params2=params,
            **ends,
        )


class SegmentHost(Host):  # type: ignore[misc]
    """A host on one segment, at the MTU the bridge plan leaves for a frame inside VXLAN
    inside WireGuard (ARCHITECTURE.md: with hosts at 1500, TCP silently hangs)."""

    def config(self, mtu: int | None = None, **params: Any) -> Any:
        result = super().config(**params)
        if mtu is not None:
            self.cmd(f"ip link set dev {self.defaultIntf()} mtu {mtu}")
        return result


class RoutedSegmentHost(Host):  # type: ignore[misc]
    """A host on a routed segment's LAN behind its site (`lab.plan.RoutedHost`): Mininet
    sets its IPv4 address and default route; this adds the IPv6 ones, if any."""

    def config(
        self,
        ip6: ipaddress.IPv6Interface | None = None,
        gateway6: ipaddress.IPv6Interface | None = None,
        **params: Any,
    ) -> Any:
        result = super().config(**params)
        if ip6 is not None and gateway6 is not None:
            intf = self.defaultIntf()
            # nodad: the lab planned the address (lab.netns.up does the same).
            self.cmd(f"ip -6 addr replace {ip6} dev {intf} nodad")
            self.cmd(f"ip -6 route replace default via {gateway6.ip} dev {intf}")
        return result


class _LabNode(Switch):  # type: ignore[misc]
    """A node that runs in a namespace of its own whatever Mininet's default, and leaves its
    namespace to the lab's teardown."""

    def __init__(self, name: str, lab: OvercastLab, **params: Any) -> None:
        params["inNamespace"] = True
        super().__init__(name, **params)
        self.lab = lab

    def name_namespace(self, ns: str) -> None:
        netns.attach(self.lab.registry.netns(ns), self.pid)

    def stop(self, deleteIntfs: bool = True) -> None:
        """Nothing to stop here: `OvercastLab.down` removes the namespace and its daemons."""


class ProviderNetwork(_LabNode):
    """One provider's network joining every site's access link: a Linux bridge, or, on a
    kernel without netem, `lab.wan_emulator` with the provider's delay and loss."""

    def __init__(
        self,
        name: str,
        lab: OvercastLab,
        underlay: str,
        emulate: LinkShape | None = None,
        **params: Any,
    ) -> None:
        super().__init__(name, lab, **params)
        self.underlay = lab.plan.underlay(underlay)
        self.emulate = emulate

    def start(self, controllers: Sequence[Controller]) -> None:
        ns = self.underlay.netns
        self.name_namespace(ns)
        ports = [i for i in self.intfNames() if i != "lo"]
        if self.emulate is None:
            netns.bridge(ns, names.WAN_BRIDGE)
            for intf in ports:
                netns.enslave(ns, intf, names.WAN_BRIDGE)
            return
        for intf in ports:
            netns.up(ns, intf)
        delay_ms, loss = self.emulate.path()
        state = self.lab.plan.state_dir
        pidfile = self.lab.registry.process(state / f"{self.name}.pid", build.CONTROLLER_PROGRAM)
        log = self.lab.registry.file(state / f"{self.name}.log")
        argv = [sys.executable, "-m", "lab.wan_emulator", *ports]
        argv += [f"--delay-ms={delay_ms:g}", f"--loss={loss:.4g}"]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                # Beside the data plane's daemons: BFD's packets cross it.
                ["ip", "netns", "exec", ns, "nice", "-n", str(build.DATAPLANE_NICE), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile.write_text(f"{proc.pid}\n")

        self.lab.meanwhile(self._wait_forwarding, proc, log)

    def _wait_forwarding(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        def ready() -> bool:
            return proc.poll() is not None or wan_emulator.READY in log.read_text(errors="replace")

        if not netns.wait_until(ready, 30.0) or proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise netns.LabCommandError(
                f"the provider network {self.name} (lab.wan_emulator) did not start (see "
                f"{log}): {' / '.join(tail) or 'no output'}"
            )


class OvercastSite(_LabNode):
    """A site: its own OVS (userspace datapath) programmed by our controller, and the
    bridge's WireGuard and VXLAN tunnels to the other sites."""

    def __init__(self, name: str, lab: OvercastLab, site: str, **params: Any) -> None:
        super().__init__(name, lab, **params)
        self.site = lab.plan.site(site)

    def start(self, controllers: Sequence[Controller]) -> None:
        lab, site = self.lab, self.site
        # Our controller whatever mn was given: as the `--controller overcast` node if there
        # is one (it shows in mn's `nodes`), else in a namespace of its own.
        ours = [c for c in controllers if isinstance(c, OvercastController)]
        if ours:
            ours[0].serve(lab)
        else:
            lab.start_controller()
        self.name_namespace(site.netns)
        # Sites are built side by side: most of the time goes to daemons starting up.
        lab.meanwhile(self._build)

    def _build(self) -> None:
        lab, site = self.lab, self.site
        build.site_network(lab.plan, site, lab.registry)
        for host in lab.plan.hosts_at(site.name):
            build.attach_host(site, host)
        for routed in lab.plan.routed_hosts:
            if routed.site == site.name:
                build.attach_routed_host(site, routed)
        build.build_dataplane(site, lab.keys, lab.registry)
        build.prioritise(site)
        build.start_watch(lab.plan, site, lab.registry)

    @classmethod
    def batchStartup(cls, switches: Sequence[OvercastSite]) -> Sequence[OvercastSite]:
        """Once every site has started: wait for the processes still starting, until the
        controller has programmed every switch and every path's BFD session is up, so the
        first ping finds a network."""
        if switches:
            lab = switches[0].lab
            lab.finish_starting()
            info("\n*** Waiting for the controller to program every site switch")
            flows.wait_programmed(lab.config, lab.plan)
            if len(lab.plan.underlays) > 1:
                info("\n*** Waiting for every path's BFD session")
                flows.wait_paths_up(lab.plan)
        return switches

    def connected(self) -> bool:
        try:
            state = switch.vsctl(self.site, "get", "Controller", self.site.bridge, "is_connected")
        except netns.LabCommandError:
            return False
        return state == "true"


class OvercastController(Controller):  # type: ignore[misc]
    """Our os-ken controller (`overcast controller run`) in a namespace of its own, on the
    lab's management network. mn makes controllers before anything knows the topology, so
    the controller starts when the first site asks for it (`serve`)."""

    def __init__(self, name: str, **params: Any) -> None:
        params.pop("inNamespace", None)
        params.setdefault("port", OPENFLOW_PORT)
        super().__init__(name, inNamespace=True, **params)
        self.lab: OvercastLab | None = None

    def checkListening(self) -> None:
        """A fresh namespace: nothing else can listen there."""

    def start(self) -> None:
        """Nothing yet: `serve` starts the controller for the sites' lab."""

    def serve(self, lab: OvercastLab) -> None:
        if self.lab is lab:
            return
        if self.lab is not None:
            raise ValueError(f"controller {self.name} already serves lab {self.lab.plan.lab_id}")
        self.lab = lab
        lab.start_controller(self.pid)
        self.ip = str(lab.plan.controller.ip)

    def stop(self, *args: Any, **kwargs: Any) -> None:
        """The controller process goes with the lab (`OvercastLab.down`)."""
        Node.stop(self, *args, **kwargs)


@contextlib.contextmanager
def overcast_net(
    config: str | Path | None = None,
    *,
    sites: int = 2,
    segments: int = 2,
    hosts: int = 1,
    routed: int = 0,
    lab_id: str | None = None,
) -> Iterator[Mininet]:
    """The network `mn --custom lab/mininet_topos.py --topo overcast,...` builds, started,
    programmed and with every path up; stopped and removed (only what it made) on exit."""
    topo = OvercastTopo(
        sites=sites,
        segments=segments,
        hosts=hosts,
        routed=routed,
        config=str(config) if config is not None else None,
        lab_id=lab_id,
    )
    try:
        net = Mininet(topo=topo, controller=OvercastController, autoSetMacs=False)
        try:
            net.start()
            yield net
        finally:
            net.stop()
    finally:
        topo.lab.down()


def own_cleanup() -> None:
    """What mn runs after Ctrl-C or an error, in place of Mininet's cleanup(): that one
    kills every Mininet host, ping and controller on the machine and deletes /tmp/*.log.
    This stops only the processes this mn started (its hosts' shells with them, and so
    their namespaces and links); the lab goes with the process (atexit: `lab.down`)."""
    info("*** Stopping what this network started (nothing else on the machine)\n")
    mine = netns.descendants(os.getpid())
    netns.terminate(mine, grace=5)
    netns.terminate(mine, grace=1, sig=signal.SIGKILL)  # any that ignored SIGTERM
