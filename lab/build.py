"""Apply a `LabPlan`: build the namespaces, links and switches it describes, and tear a lab
down again from its registry. Every step checks before it creates, so `up` can be re-run."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import wireguard
from bridge.apply import apply_site
from bridge.failover import path_groups
from bridge.keys import KeyStore
from lab import attest as lab_attest
from lab import names, netns, switch
from lab.plan import (
    OPENFLOW_PORT,
    STATE_ROOT,
    HostPlan,
    LabPlan,
    RoutedHost,
    SitePlan,
    plan_lab,
)
from lab.registry import REGISTRY_FILE, Registry, teardown_order
from overcast.config import OvercastConfig

Progress = Callable[[str], None]
META_FILE = "lab.json"
# The enterprise's key store (bridge.keys.KeyStore): every site's pair, as the enterprise
# generates them. Each site runs from its own directory, sites/<site>/keys: its private key
# and its peers' public keys only (KeyStore.provision), like a provider's host would.
KEYS_DIR = "keys"
SITE_KEYS_DIR = "keys"
WIREGUARD_RUN_DIR = "wireguard"  # per site, in the site's dir: wireguard-go's PID and log
# Stands in for the public key of an attested site not admitted yet (32 zero bytes): the
# lab's layout is planned with it, never a data plane.
NOT_ADMITTED_KEY = "A" * 43 + "="
CONFIG_FILE = "overcast.yaml"  # the config the lab was built from, for the controller
CONTROLLER_PID = "controller.pid"
CONTROLLER_LOG = "controller.log"
WATCH_PID = "watch.pid"  # per site, in the site's dir
WATCH_LOG = "watch.log"
WATCH_METRICS_PORT = 9312  # on the site namespace's loopback
# The controller is this same Python running `overcast controller run`.
CONTROLLER_PROGRAM = Path(sys.executable).name


def _quiet(_: str) -> None:
    pass


class LabConflict(RuntimeError):
    """The lab id is already used by a lab built from something else."""


def fingerprint(config_text: str) -> str:
    return hashlib.sha256(config_text.encode()).hexdigest()[:16]


def up(
    config: OvercastConfig,
    lab_id: str,
    source: str,
    config_text: str,
    progress: Progress = _quiet,
    state_root: Path = STATE_ROOT,
) -> LabPlan:
    """Build sites, hosts, underlay and management network for `config`; return the plan.
    `source` and `config_text` identify the config, so a second `up` of other content under
    the same lab id is refused instead of half-merged."""
    plan, registry, keys = prepare(config, lab_id, source, config_text, state_root)
    attested = attested_sites(config)
    progress(
        f"lab {plan.lab_id}: underlay networks ({', '.join(u.name for u in plan.underlays)}) "
        "and management network"
    )
    for ns, bridge in (
        *((u.netns, names.WAN_BRIDGE) for u in plan.underlays),
        (plan.controller_netns, names.MGMT_BRIDGE),
    ):
        netns.ensure(registry.netns(ns))
        netns.bridge(ns, bridge)
    netns.up(plan.controller_netns, names.MGMT_BRIDGE, plan.controller)
    # The controller starts before the switches exist, so each connects on its first try
    # (OVS backs off up to 8 s between attempts) and is programmed as its ports appear.
    progress(
        f"lab {plan.lab_id}: controller on {plan.controller_target} (netns {plan.controller_netns})"
    )
    start_controller(plan, registry)
    for site in plan.sites:
        progress(f"lab {plan.lab_id}: site {site.name} (netns {site.netns}, OVS {site.datapath})")
        build_site(plan, site, registry)
    for host in plan.hosts:
        progress(f"lab {plan.lab_id}: host {host.label} {host.address.ip} mtu {host.mtu}")
        build_host(plan.site(host.site), host, registry)
    for routed in plan.routed_hosts:
        progress(
            f"lab {plan.lab_id}: routed host {routed.label} "
            + ", ".join(f"{a} via {g.ip}" for a, g in routed.addresses)
        )
        build_routed_host(plan.site(routed.site), routed, registry)
    for site in plan.sites:
        if site.name in attested:
            continue
        wgs = site.dataplane.wireguard_interfaces
        progress(
            f"lab {plan.lab_id}: site {site.name} WireGuard "
            + ", ".join(f"{wg.name} ({wg.underlay}) mtu {wg.mtu}" for wg in wgs)
            + f", {len(tuple(site.dataplane.tunnels()))} VXLAN tunnels"
        )
        # After the hosts: apply_site guards every port of the switch, host ports included.
        build_dataplane(site, keys, registry)
    if attested:
        lab_attest.up(
            config,
            plan,
            attested,
            registry,
            start_overcast,
            plan.state_dir / CONFIG_FILE,
            progress,
        )
    for site in plan.sites:
        prioritise(site)
        start_watch(plan, site, registry)
    return plan


def prepare(
    config: OvercastConfig,
    lab_id: str,
    source: str,
    config_text: str,
    state_root: Path = STATE_ROOT,
) -> tuple[LabPlan, Registry, KeyStore]:
    """Claim the lab's state dir, make every site's key pair and keep the config for the
    controller; return the plan, the registry and the enterprise's key store."""
    state_dir = state_root / lab_id
    registry = Registry(state_dir)
    _claim(state_dir, registry, source, fingerprint(config_text))
    keys = KeyStore(registry.file(state_dir / KEYS_DIR))
    # An attested site's key pair is made when it is admitted, its private key sealed to
    # its TPM (lab/attest.py); the others' now.
    attested = attested_sites(config)
    keys.ensure_all(s for s in config.sites if s not in attested)
    registry.file(state_dir / CONFIG_FILE).write_text(config_text)
    return plan_of(config, lab_id, state_root), registry, keys


def attested_sites(config: OvercastConfig) -> list[str]:
    return config.attest.required(list(config.sites)) if config.attest else []


def plan_of(config: OvercastConfig, lab_id: str, state_root: Path = STATE_ROOT) -> LabPlan:
    """The plan of a lab that exists: planned again with its sites' public keys. An
    attested site that is not admitted has none (its tunnels do not exist); its layout
    does not depend on it, so it is planned with a stand-in."""
    keys = KeyStore(state_root / lab_id / KEYS_DIR)
    attested = attested_sites(config)

    def public(site: str) -> str:
        if site in attested and not (keys.directory / f"{site}.pub").exists():
            return NOT_ADMITTED_KEY
        return keys.public_key(site)

    return plan_lab(config, lab_id, {s: public(s) for s in config.sites}, state_root)


def _claim(state_dir: Path, registry: Registry, source: str, digest: str) -> None:
    meta = state_dir / META_FILE
    if meta.exists():
        have = json.loads(meta.read_text())
        if have.get("fingerprint") != digest:
            raise LabConflict(
                f"lab {state_dir.name} was built from {have.get('source')} with different "
                f"content; run `overcast lab down {state_dir.name}` first"
            )
        return
    registry.open()
    meta.write_text(json.dumps({"lab_id": state_dir.name, "source": source, "fingerprint": digest}))


def start_controller(plan: LabPlan, registry: Registry) -> None:
    """Our os-ken controller (`overcast controller run`) in the controller's namespace,
    listening on the management network; it outlives this process, like the switches."""
    start_overcast(
        registry,
        plan.controller_netns,
        plan.state_dir / CONTROLLER_PID,
        plan.state_dir / CONTROLLER_LOG,
        [
            *("controller", "run"),
            *("--config", str(plan.state_dir / CONFIG_FILE)),
            # The controller derives each switch's ports from the config and these databases.
            *(f"--ovsdb={s.name}=unix:{switch.db_socket(s)}" for s in plan.sites),
            *("--listen", f"{plan.controller.ip}:{OPENFLOW_PORT}"),
        ],
        OPENFLOW_PORT,
        "the controller",
    )


def start_watch(plan: LabPlan, site: SitePlan, registry: Registry) -> None:
    """The site's path watcher (`overcast bridge watch`: the failback hold-down and path
    metrics on 127.0.0.1:WATCH_METRICS_PORT) in the site's namespace, if the site has a
    peer over more than one path."""
    if not path_groups(site.dataplane):
        return
    start_overcast(
        registry,
        site.netns,
        site.dir / WATCH_PID,
        site.dir / WATCH_LOG,
        [
            *("bridge", "watch", str(plan.state_dir / CONFIG_FILE)),
            *("--site", site.name, "--keys", str(plan.state_dir / KEYS_DIR)),
            *("--prefix", plan.lab_id),
            *("--ovsdb", f"unix:{switch.db_socket(site)}"),
            *("--ovs-rundir", str(switch.run_dir(site))),
            *("--metrics", f"127.0.0.1:{WATCH_METRICS_PORT}"),
        ],
        WATCH_METRICS_PORT,
        f"the path watcher of site {site.name}",
        # Beside the data plane: it must hold a path before BFD brings it back up.
        ("nice", "-n", str(DATAPLANE_NICE)),
    )
    pid = netns.pid_from(site.dir / WATCH_PID, CONTROLLER_PROGRAM)
    if pid is not None:
        with contextlib.suppress(OSError):  # it exited meanwhile
            _prioritise_autogroup(pid)


def start_overcast(
    registry: Registry,
    ns: str,
    pidfile: Path,
    logfile: Path,
    command: list[str],
    port: int,
    what: str,
    priority: tuple[str, ...] = (),
    wait: bool = True,
) -> Callable[[], None]:
    """`overcast COMMAND...` (this same Python) as a daemon in namespace `ns`, prefixed
    with `priority` (e.g. `nice -n -10`); returns once it listens on TCP `port` there, or
    with `wait=False` at once, with the function that waits for that (meanwhile the caller
    builds what does not need it: Python's start-up takes seconds on a busy machine)."""
    if netns.pid_from(pidfile, CONTROLLER_PROGRAM) is not None:
        return lambda: None
    registry.process(pidfile, CONTROLLER_PROGRAM)
    log = registry.file(logfile)
    argv = ["ip", "netns", "exec", ns, *priority, sys.executable, "-m", "overcast", *command]
    # Our own package, wherever it is imported from (a checkout or an installed copy).
    root = str(Path(__file__).absolute().parents[1])
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C at the terminal must not stop the lab
        )
    pidfile.write_text(f"{proc.pid}\n")

    def started() -> None:
        # `ip netns exec` execs the program, so the pid is its own.
        if (
            not netns.wait_until(lambda: proc.poll() is not None or _listening(ns, port), 30.0)
            or proc.poll() is not None
        ):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise netns.LabCommandError(
                f"{what} did not start (see {log}): {' / '.join(tail) or 'no output'}"
            )

    if wait:
        started()
    return started


def _listening(ns: str, port: int) -> bool:
    return bool(netns.run(ns, ["ss", "-Hltn", f"sport = :{port}"]).strip())


def build_site(plan: LabPlan, site: SitePlan, registry: Registry) -> None:
    netns.ensure(registry.netns(site.netns))
    # Underlay: per network the site is on, a WAN NIC on that network's Linux bridge (the
    # lab's stand-in for one provider's network), with host routes to the other sites'
    # addresses on it.
    for network in site.underlays:
        underlay = plan.underlay(network)
        netns.veth(
            site.netns,
            underlay.site_if,
            underlay.netns,
            names.uplink_port(site.name),
            site.underlay_mtu,
        )
        netns.enslave(underlay.netns, names.uplink_port(site.name), names.WAN_BRIDGE)
    site_network(plan, site, registry)


def site_network(plan: LabPlan, site: SitePlan, registry: Registry) -> None:
    """On a site whose WAN NICs exist: their addresses and the host routes to the other
    sites' addresses on each, the management link to the controller, and the site's
    switch."""
    for network, address in site.underlays.items():
        underlay = plan.underlay(network)
        prefix = 32 if address.version == 4 else 128
        netns.up(site.netns, underlay.site_if, ipaddress.ip_interface(f"{address}/{prefix}"))
        for peer in plan.sites:
            if peer.name != site.name and network in peer.underlays:
                netns.route(site.netns, peer.underlays[network], underlay.site_if)
    # Management: a separate network to the controller's namespace.
    netns.veth(site.netns, names.MGMT_IF, plan.controller_netns, names.uplink_port(site.name), 1500)
    netns.enslave(plan.controller_netns, names.uplink_port(site.name), names.MGMT_BRIDGE)
    netns.up(site.netns, names.MGMT_IF, site.mgmt)
    switch.start(site, registry)
    switch.ensure_bridge(plan, site)


# The data plane's daemons run at the priority ovs-ctl gives ovs-vswitchd and ovsdb-server
# by default (--ovs-vswitchd-priority=-10, --ovsdb-server-priority=-10): BFD's 50 ms packets
# must not wait behind a busy machine's other work, or a healthy path is declared dead, and
# the switch reports BFD's changes to the path watcher through ovsdb-server (one status
# transaction at a time: a slow server delays the next report). wireguard-go gets the same,
# as the kernel's WireGuard would run in softirq context ahead of any process.
DATAPLANE_DAEMONS = ("ovs-vswitchd", "ovsdb-server", "wireguard-go")
DATAPLANE_NICE = -10


def prioritise(site: SitePlan) -> None:
    """Renice every thread of the site's data-plane daemons (threads have their own nice
    value on Linux; threads they start later inherit it)."""
    for pid in netns.pids_in(site.netns):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm not in DATAPLANE_DAEMONS:
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), DATAPLANE_NICE)
            _prioritise_autogroup(pid)
        except (OSError, ValueError):
            continue  # it exited meanwhile


def _prioritise_autogroup(pid: int) -> None:
    """With the kernel's autogroup scheduling on (sched(7); kernel.sched_autogroup_enabled),
    a thread's nice value only ranks it among its own session's threads: against another
    session (another test run, say) the whole session counts, at the autogroup's nice.
    Measured here: at load 7-12, ovs-vswitchd's main thread, which receives every BFD packet,
    waited 110-165 ms for a CPU in the 200 ms before each of its sessions timed out. So the
    autogroup of a daemon that leads its own session gets the same nice."""
    autogroup = Path(f"/proc/{pid}/autogroup")
    if os.getsid(pid) == pid and autogroup.exists():
        autogroup.write_text(str(DATAPLANE_NICE))


def build_host(site: SitePlan, host: HostPlan, registry: Registry) -> None:
    netns.ensure(registry.netns(host.netns))
    netns.veth(site.netns, host.port, host.netns, names.HOST_IF, host.mtu)
    netns.up(host.netns, names.HOST_IF, host.address, mac=host.mac)
    netns.tx_checksum_off(host.netns, names.HOST_IF)
    attach_host(site, host)


def attach_host(site: SitePlan, host: HostPlan) -> None:
    """The site's end of a host's link (which exists): up, checksummed in software, and a
    port of the site switch tagged with the host's segment and MAC."""
    netns.up(site.netns, host.port)
    netns.tx_checksum_off(site.netns, host.port)
    switch.ensure_port(site, host.port, host.segment, host.mac)


def build_routed_host(site: SitePlan, host: RoutedHost, registry: Registry) -> None:
    """A host on a LAN behind its site, as a real one on a routed segment: a plain link to
    the site's kernel (not the switch), addresses in the site's prefixes, a default route
    via the site, which routes the other sites' prefixes into WireGuard."""
    netns.ensure(registry.netns(host.netns))
    netns.veth(site.netns, host.port, host.netns, names.HOST_IF, host.mtu)
    for address, gateway in host.addresses:
        netns.up(host.netns, names.HOST_IF, address)
        family = f"-{address.version}"
        netns.run(host.netns, ["ip", family, "route", "replace", "default", "via", str(gateway.ip)])
    attach_routed_host(site, host)


def attach_routed_host(site: SitePlan, host: RoutedHost) -> None:
    """The site's end of a routed host's LAN (which exists): up, with the gateway's
    addresses."""
    for _, gateway in host.addresses:
        netns.up(site.netns, host.port, gateway)


def build_dataplane(site: SitePlan, keys: KeyStore, registry: Registry) -> None:
    """The bridge's WireGuard interface and VXLAN tunnels in the site's namespace, the
    tunnels plugged into the site switch, run from the site's own key directory (provisioned
    from the enterprise store `keys`). wireguard-go runs in the site's namespace (the
    teardown stops every process there); its UAPI socket lives outside, so it is recorded."""
    run_dir = registry.file(site.dir / WIREGUARD_RUN_DIR)
    peers = {p.site for wg in site.dataplane.wireguard_interfaces for p in wg.peers}
    own = keys.provision(site.name, sorted(peers), registry.file(site.dir / SITE_KEYS_DIR))
    for wg in site.dataplane.wireguard_interfaces:
        registry.file(wireguard.uapi_socket(wg.name))
    with switch.ovsdb(site) as db:
        apply_site(site.dataplane, netns=site.netns, keys=own, run_dir=run_dir, switch=db)


# -- teardown ------------------------------------------------------------------------------


def down(state_dir: Path, progress: Progress = _quiet) -> None:
    """Remove everything the registry in `state_dir` names, in a safe order."""
    entries = teardown_order(Registry(state_dir).entries())
    lab_id = state_dir.name
    progress(f"lab {lab_id}: stopping processes")
    for entry in entries:
        if entry.kind == "process":
            _stop_pidfile(Path(entry.name), entry.program)
    namespaces = [e.name for e in entries if e.kind == "netns"]
    # Namespaces are named after the lab id, so any the registry lacks (it was deleted by
    # hand, say) are found by name too.
    namespaces += sorted(set(names.lab_netns(lab_id, netns.all_names())) - set(namespaces))
    netns.kill_all(namespaces)
    progress(f"lab {lab_id}: removing {len(namespaces)} namespaces")
    for name in namespaces:
        netns.remove(name)
    for entry in entries:
        if entry.kind == "path":
            _remove_path(Path(entry.name))
    # wireguard-go's UAPI sockets carry the lab id too (bridge.plan.wireguard_name); a
    # wireguard-go killed before it could clean up leaves its socket behind.
    for sock in wireguard.UAPI_DIR.glob(f"{lab_id}*.sock"):
        if not wireguard.uapi_answers(sock.stem):
            sock.unlink(missing_ok=True)
    # Whatever else is in the state dir (logs, the registry) goes with it.
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(state_dir)


def _stop_pidfile(path: Path, program: str) -> None:
    pid = netns.pid_from(path, program)
    if pid is not None:
        netns.terminate([pid], grace=5.0)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- what exists ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabState:
    lab_id: str
    state_dir: Path
    source: str
    namespaces: dict[str, bool]
    processes: dict[str, int | None]

    @property
    def healthy(self) -> bool:
        return all(self.namespaces.values()) and all(self.processes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "state_dir": str(self.state_dir),
            "source": self.source,
            "healthy": self.healthy,
            "namespaces": self.namespaces,
            "processes": self.processes,
        }


def lab_dirs(root: Path = STATE_ROOT) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if names.LAB_ID_RE.match(p.name) and (p / REGISTRY_FILE).exists()
    )


def state_of(state_dir: Path) -> LabState:
    entries = Registry(state_dir).entries()
    try:
        source = json.loads((state_dir / META_FILE).read_text()).get("source", "")
    except (OSError, ValueError):
        source = ""
    return LabState(
        lab_id=state_dir.name,
        state_dir=state_dir,
        source=source,
        namespaces={e.name: netns.exists(e.name) for e in entries if e.kind == "netns"},
        processes={
            e.name: netns.pid_from(Path(e.name), e.program) for e in entries if e.kind == "process"
        },
    )
