"""`overcast bridge ...`: WireGuard keys and the data-plane plan of a site."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.netns import ApplyError, require_netns
from overcast import exitcodes, log
from overcast.cli import CommandError, add_json_flag, emit, listen_address, load_config

# Keys, netlink and OVSDB need cryptography, pyroute2 and OVS: the handlers import them when
# they run, so that `overcast --help` and `validate` start without them.
if TYPE_CHECKING:
    from bridge.apply import AppliedSite
    from bridge.keys import KeyStore
    from bridge.plan import SitePlan, VxlanTunnel
    from bridge.portguard import PortGuard
    from controller.ovsdb import Ovsdb

DEFAULT_PREFIX = "oc"
RUN_ROOT = Path("/run/overcast/bridge")  # wireguard-go PID and log files, per namespace


def register(sub: Any) -> None:
    bridge = sub.add_parser(
        "bridge",
        help="WireGuard keys and each site's tunnels, VXLAN devices and MTUs",
        description=(
            "The bridge is each site's data plane: one WireGuard interface with every site it "
            "shares a segment with as a peer, and per L2 segment one VXLAN device per peer "
            "site, inside WireGuard. MTUs are computed from the sites' underlay MTU. The "
            "enterprise generates and holds all WireGuard keys; sites receive their own "
            "private key and their peers' public keys only."
        ),
        epilog=(
            "examples:\n"
            "  overcast bridge keys generate overcast.yaml --keys /etc/overcast/keys\n"
            "  overcast bridge plan overcast.yaml --site hq --keys /etc/overcast/keys\n"
            "  overcast bridge plan overcast.yaml --site hq --keys /etc/overcast/keys --json\n"
            "  overcast bridge up overcast.yaml --site hq --keys /etc/overcast/keys --netns hq\n"
            "  overcast bridge status overcast.yaml --site hq --keys /etc/overcast/keys --netns hq\n"
            "  overcast bridge down overcast.yaml --site hq --keys /etc/overcast/keys --netns hq"
        ),
    )
    cmds = bridge.add_subparsers(dest="bridge_command", metavar="BRIDGE_COMMAND", required=True)

    _register_keys(cmds)

    p = cmds.add_parser(
        "plan",
        help="print what a site's data plane will be (no changes are made)",
        description=(
            "Compute SITE's WireGuard interface, peers, VXLAN devices and MTUs from CONFIG "
            "and the public keys in DIR, and print them. Nothing is changed and no private "
            "key is read or printed. Hosts on a stretched segment must use its inner MTU, or "
            "have TCP clamped to the MSS shown."
        ),
        epilog="example:\n  overcast bridge plan overcast.yaml --site hq --keys ./keys --json",
    )
    _site_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=_plan)

    p = cmds.add_parser(
        "up",
        help="build or converge a site's data plane in a network namespace (root)",
        description=(
            "Make namespace NETNS match SITE's plan: the WireGuard interface (kernel module if "
            "the kernel has one, else wireguard-go), its address and peers, and the VXLAN "
            "devices. Only what differs is changed; running it again prints 'nothing to "
            "change'. With --ovsdb the VXLAN devices also join the site's OVS bridge, which "
            "must exist; they and every other port of the bridge with a Linux device (OVSDB "
            "type system) get no IPv6 and, on a userspace (netdev) bridge, an nftables "
            "ingress drop (table overcast-bridge-SITE; needs nft), so the namespace's own "
            "kernel never handles a frame meant for the switch. Internal ports (the "
            "bridge's own, a management interface) are the kernel's and are left alone. "
            "Routed (L3) prefixes other sites announce are routed into the tunnel, and TCP "
            "MSS is clamped on every path into a tunnel (nftables table overcast-mss-SITE). "
            "With --watch it keeps running: it converges again every --interval seconds "
            "(repairing a killed wireguard-go, say) and serves each tunnel's figures as "
            "Prometheus metrics on --metrics until SIGTERM or SIGINT; the data plane stays up "
            "when it stops."
        ),
        epilog=(
            "examples:\n  overcast bridge up overcast.yaml --site hq --keys ./keys --netns hq "
            "--ovsdb unix:/run/overcast/hq/db.sock\n"
            "  overcast bridge up overcast.yaml --site hq --keys ./keys --netns hq --watch "
            "--metrics 127.0.0.1:9320"
        ),
    )
    _site_flags(p)
    _netns_flags(p, ovsdb=True)
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: converge every --interval seconds, serve --metrics",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="seconds between convergence runs with --watch (default 30)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=listen_address,
        help="with --watch, serve Prometheus metrics on http://HOST:PORT/metrics",
    )
    add_json_flag(p)
    p.set_defaults(handler=_up)

    p = cmds.add_parser(
        "down",
        help="remove everything 'up' made for a site (root)",
        description=(
            "Stop wireguard-go, delete the site's WireGuard and VXLAN links (found by their "
            "'overcast-bridge:SITE' alias, so this works after a crash) and, with --ovsdb, "
            "their OVS ports, and the nftables guard. Removing what is not there is fine."
        ),
        epilog="example:\n  overcast bridge down overcast.yaml --site hq --keys ./keys --netns hq",
    )
    _site_flags(p)
    _netns_flags(p, ovsdb=True)
    add_json_flag(p)
    p.set_defaults(handler=_down)

    p = cmds.add_parser(
        "status",
        help="a site's tunnels: backend, path, handshake age, traffic, MTU (root)",
        description=(
            "Show each tunnel of SITE (one per peer and path, i.e. underlay network) as its "
            "WireGuard interface in NETNS sees it: the backend serving the interface "
            "(kernel module or wireguard-go, detected), the peer's live endpoint, the age of "
            "the last handshake (down after 180 s without one), bytes received and sent, the "
            "effective MTU (the interface's, capped by the peer's end) and the MTU of the L2 "
            "(VXLAN) tunnels over it. The same figures are Prometheus metrics of 'up --watch "
            "--metrics'. With --ovsdb "
            "also list every interface of the site's OVS bridge with its OVSDB type and "
            "whether the site's kernel is kept off it. On a userspace (netdev) bridge every "
            "port with a Linux device (type system: veths, NICs, the tunnels) must be "
            "guarded; internal and tap ports are the kernel's own interfaces on the switch "
            "and must not be. A port plugged in since the last 'up' is unguarded until the "
            "next 'up'. Exit 0 if every tunnel had a handshake in the last 180 s and every port is "
            "as it should be, 1 if a tunnel is down, a switch port unguarded or a kernel "
            "port guarded."
        ),
        epilog=(
            "example:\n  overcast bridge status overcast.yaml --site hq --keys ./keys --netns hq "
            "--ovsdb unix:/run/overcast/hq/db.sock"
        ),
    )
    _site_flags(p)
    _netns_flags(p, ovsdb=False)
    _ovsdb_flag(p)
    add_json_flag(p)
    p.set_defaults(handler=_status)

    p = cmds.add_parser(
        "watch",
        help="hold traffic off a recovered path until it has stayed up (failback hold-down)",
        description=(
            "Run beside SITE's switch: follow the BFD session of every path to a peer that "
            "has two or more (one per shared underlay network), and keep a path that was "
            "down out of its fast-failover group (ovs-appctl bfd/set-forwarding PORT false) "
            "until it has been up for bridge.failover.hold_down_s without a break. Failover "
            "itself needs neither this nor the controller: the switch's fast-failover group "
            "and BFD do it alone; without this, failback is immediate. A path is never held "
            "while it is the peer's only usable one. With --metrics, serves path state, "
            "failovers and failbacks counted and seconds since the last failover. Runs until "
            "SIGTERM or Ctrl-C."
        ),
        epilog=(
            "example:\n  overcast bridge watch overcast.yaml --site hq --keys ./keys "
            "--ovsdb unix:/run/openvswitch/db.sock --ovs-rundir /run/openvswitch "
            "--metrics 127.0.0.1:9312"
        ),
    )
    _site_flags(p)
    p.add_argument("--ovsdb", required=True, metavar="REMOTE", help="the site's ovsdb-server")
    p.add_argument(
        "--ovs-rundir",
        type=Path,
        default=Path("/var/run/openvswitch"),
        help="ovs-vswitchd's run directory, holding its pid file and control socket "
        "(default /var/run/openvswitch)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics",
    )
    p.set_defaults(handler=_watch_paths, long_running=True)


def _register_keys(cmds: Any) -> None:
    keys = cmds.add_parser(
        "keys",
        help="WireGuard keys over their life: generate, rotate, revoke, export",
        description=(
            "The enterprise's key directory (--keys) holds every site's key pair. A site "
            "runs from its own directory holding its private key and its peers' public "
            "keys only; rotate and revoke re-write those directories and change the running "
            "interfaces of the sites given with --at."
        ),
        epilog=(
            "examples:\n"
            "  overcast bridge keys generate overcast.yaml --keys /etc/overcast/keys\n"
            "  overcast bridge keys rotate overcast.yaml hq --keys /etc/overcast/keys \\\n"
            "      --at hq=oc-hq:/etc/overcast/hq --at cloud-a=oc-cloud-a:/etc/overcast/cloud-a\n"
            "  overcast bridge keys revoke overcast.yaml cloud-a --keys /etc/overcast/keys --at ...\n"
            "  overcast bridge keys export overcast.yaml hq --keys /etc/overcast/keys > hq.conf"
        ),
    )
    sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND", required=True)

    p = sub.add_parser(
        "generate",
        help="generate missing key pairs and print the public keys",
        description=(
            "Make sure DIR holds a key pair for every site of CONFIG: <site>.key (the private "
            "key, mode 0600, never printed) and <site>.pub. Existing keys are kept, revoked "
            "sites are skipped. Prints each site's public key, which is what you may hand out."
        ),
        epilog="example:\n  overcast bridge keys generate overcast.yaml --keys ./keys --json",
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    _keys_flag(p)
    add_json_flag(p)
    p.set_defaults(handler=_keys)

    for name, what, detail in (
        (
            "rotate",
            "give SITE a new key pair and move every running peer to it",
            "Every peer given with --at first learns the new public key, then SITE switches "
            "to its new private key while the peers move its AllowedIPs to the new key, all "
            "at once, so traffic keeps flowing (a few packets may be lost in that instant). "
            "Rotating a revoked site re-admits it. Without --at only the key directory "
            "changes: provision the sites and run 'bridge up' at each.",
        ),
        (
            "revoke",
            "remove SITE's key from the enterprise and every running peer",
            "SITE's key pair is deleted from DIR (SITE.revoked keeps its public key, so "
            "nothing regenerates it) and removed from every peer given with --at: traffic "
            "to SITE stops at once and its old key completes no handshake. SITE's own "
            "directory is left alone. 'keys rotate' brings the site back with a new key.",
        ),
    ):
        p = sub.add_parser(
            name,
            help=what,
            description=detail,
            epilog=(
                f"example:\n  overcast bridge keys {name} overcast.yaml cloud-a --keys ./keys "
                "--at hq=oc-hq:./hq-keys --at cloud-a=oc-cloud-a:./cloud-a-keys"
            ),
        )
        p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
        p.add_argument("site", metavar="SITE", help="the site whose key changes")
        _keys_flag(p)
        p.add_argument(
            "--at",
            metavar="SITE=NETNS:KEYDIR",
            action="append",
            default=[],
            help=(
                "a running site: its namespace and its own key directory (repeat per site; "
                f"wireguard-go's files are in {RUN_ROOT}/NETNS)"
            ),
        )
        p.add_argument(
            "--prefix",
            default=DEFAULT_PREFIX,
            help=f"start of the WireGuard interface names (default {DEFAULT_PREFIX})",
        )
        add_json_flag(p)
        p.set_defaults(handler=_rotate if name == "rotate" else _revoke)

    p = sub.add_parser(
        "export",
        help="print SITE's WireGuard configuration as a wg-quick file",
        description=(
            "SITE's interface and peers as wg-quick(8) reads them (Address, ListenPort, MTU, "
            "one [Peer] per peer with Endpoint, AllowedIPs and PersistentKeepalive), for "
            "inspection or for a host without Overcast. The private key is left out unless "
            "--with-private-key is given (then write it to a 0600 file, never to a ticket)."
        ),
        epilog="example:\n  overcast bridge keys export overcast.yaml hq --keys ./keys > hq.conf",
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument("site", metavar="SITE", help="the site to export")
    _keys_flag(p)
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"start of the WireGuard interface name (default {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--with-private-key",
        action="store_true",
        help="include the site's private key (read from DIR)",
    )
    p.set_defaults(handler=_export)


def _key_change(args: argparse.Namespace, revoke: bool) -> int:
    from bridge import keylife
    from bridge.keys import KeyStore, KeyStoreError
    from bridge.plan import PlanError

    config = load_config(args.config)
    if args.site not in config.sites:
        raise CommandError(
            f"unknown site {args.site!r}; use one of: {', '.join(config.sites)}", exitcodes.USAGE
        )
    deployed = {}
    for text in args.at:
        try:
            site, where = keylife.parse_deployed(text, RUN_ROOT)
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"--at {exc}", exitcodes.USAGE) from None
        if site not in config.sites:
            raise CommandError(
                f"--at {text}: unknown site {site!r}; use one of: {', '.join(config.sites)}",
                exitcodes.USAGE,
            )
        deployed[site] = where
    if deployed:
        _require_root(f"keys {'revoke' if revoke else 'rotate'} --at")
    store = KeyStore(args.keys)
    try:
        action = keylife.revoke if revoke else keylife.rotate
        done = action(config, args.site, store, deployed, prefix=args.prefix)
    except (KeyStoreError, PlanError, ApplyError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot change keys: {exc.filename}: {exc.strerror}") from None
    data = {
        "site": done.site,
        "old_public_key": done.old_public_key,
        "new_public_key": done.new_public_key,
        "changes": list(done.changes),
    }
    verb = "revoked" if revoke else "rotated"
    lines = [f"site {done.site}: key {verb} ({done.old_public_key} -> {done.new_public_key})"]
    lines += [f"  {c}" for c in done.changes] or ["  no running site given (--at)"]
    emit(data, args.json, "\n".join(lines))
    return exitcodes.OK


def _rotate(args: argparse.Namespace) -> int:
    return _key_change(args, revoke=False)


def _revoke(args: argparse.Namespace) -> int:
    return _key_change(args, revoke=True)


def _export(args: argparse.Namespace) -> int:
    from bridge import wireguard
    from bridge.keys import KeyStoreError

    plan, keys = _site_plan(args)
    try:
        private = keys.private_key(plan.site) if args.with_private_key else None
    except KeyStoreError as exc:
        raise CommandError(str(exc)) from None
    print(wireguard.render_wg_quick(plan.wireguard, private), end="")
    return exitcodes.OK


def _site_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    parser.add_argument("--site", required=True, help="the site, e.g. hq")
    _keys_flag(parser)
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"start of the WireGuard interface name, unique on this machine (default {DEFAULT_PREFIX})",
    )


def _netns_flags(parser: argparse.ArgumentParser, *, ovsdb: bool) -> None:
    parser.add_argument(
        "--netns", required=True, type=_netns_name, help="the site's named network namespace"
    )
    if ovsdb:
        parser.add_argument(
            "--run-dir",
            help=f"where wireguard-go's PID and log go (default {RUN_ROOT}/NETNS)",
        )
        _ovsdb_flag(parser)


def _ovsdb_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ovsdb",
        metavar="REMOTE",
        help="the site's ovsdb-server, e.g. unix:/run/overcast/hq/db.sock",
    )


def _netns_name(text: str) -> str:
    # `ip netns` keeps namespaces as files in /run/netns: a name is one path component.
    if text in ("", ".", "..") or "/" in text or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name; give the name `ip netns list` shows, e.g. hq"
        )
    return text


def _keys_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys", metavar="DIR", type=Path, required=True, help="the enterprise's key directory"
    )


def _keys(args: argparse.Namespace) -> int:
    from bridge.keys import KeyStore, KeyStoreError

    config = load_config(args.config)
    try:
        public = KeyStore(args.keys).ensure_all(config.sites)
    except KeyStoreError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot set up keys in {args.keys}: {exc.strerror}") from None
    text = "\n".join(f"{site:<10} {key}" for site, key in public.items())
    emit(public, args.json, text)
    return exitcodes.OK


def _site_plan(args: argparse.Namespace) -> tuple[SitePlan, KeyStore]:
    from bridge.keys import KeyStore, KeyStoreError
    from bridge.plan import PlanError, peers_of, plan_site

    config = load_config(args.config)
    if args.site not in config.sites:
        raise CommandError(
            f"unknown site {args.site!r}; use one of: {', '.join(config.sites)}", exitcodes.USAGE
        )
    store = KeyStore(args.keys)
    try:
        revoked = store.revoked()
        peers = peers_of(config, args.site, revoked)
        keys = {s: store.public_key(s) for s in (args.site, *peers) if s not in revoked}
        plan = plan_site(config, args.site, keys, prefix=args.prefix, revoked=revoked)
        return plan, store
    except KeyStoreError as exc:
        raise CommandError(str(exc)) from None
    except PlanError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None


def _plan(args: argparse.Namespace) -> int:
    plan, _ = _site_plan(args)
    data = plan.model_dump(mode="json") | {
        "fabric_ports": [p.model_dump(mode="json") for p in plan.fabric_ports()]
    }
    emit(data, args.json, _text(plan))
    return exitcodes.OK


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise CommandError(
            f"overcast bridge {command} needs root (it works inside network namespaces); "
            "run it with sudo"
        )


def _up(args: argparse.Namespace) -> int:
    if (args.metrics or args.interval != 30.0) and not args.watch:
        raise CommandError("--metrics and --interval go with --watch; add it", exitcodes.USAGE)
    if args.interval <= 0:
        raise CommandError(f"--interval {args.interval:g}: give seconds > 0", exitcodes.USAGE)
    plan, keys = _site_plan(args)
    _require_root("up")
    applied = _apply(args, plan, keys)
    data = {
        "site": applied.site,
        "netns": applied.netns,
        "backend": applied.backend,
        "wireguard_pid": applied.wireguard_pid,
        "links": list(applied.links),
        "changes": list(applied.changes),
    }
    done = "\n".join(f"  {c}" for c in applied.changes) or "  nothing to change"
    text = f"site {applied.site} in {applied.netns} ({applied.backend}):\n{done}"
    emit(data, args.json, text)
    if args.watch:
        log.setup(args.verbose, args.log_json, timestamps=True)  # a daemon from here on
        _watch(args, plan, keys)
    return exitcodes.OK


def _apply(args: argparse.Namespace, plan: SitePlan, keys: KeyStore) -> AppliedSite:
    from bridge.apply import apply_site
    from controller.ovsdb import OvsdbError

    with _switch(args) as switch:
        try:
            return apply_site(
                plan, netns=args.netns, keys=keys, run_dir=_run_dir(args), switch=switch
            )
        except (ApplyError, OvsdbError) as exc:
            raise CommandError(str(exc)) from None


def _watch(args: argparse.Namespace, plan: SitePlan, keys: KeyStore) -> None:
    """Converge every --interval seconds and serve metrics until SIGTERM or SIGINT."""
    from bridge.metrics import TunnelCollector
    from bridge.status import read_tunnels
    from overcast import metrics

    # SimpleQueue.put is reentrant, so a signal handler may call it (queue docs).
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: signals.put(signum))
    if args.metrics:
        collector = TunnelCollector(
            plan.site, lambda: read_tunnels(plan, args.netns, int(time.time()))
        )
        metrics.REGISTRY.register(collector)
        host, port = args.metrics
        try:
            metrics.serve(port, host)
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        print(f"metrics on http://{host}:{port}/metrics", flush=True)
    print(
        f"watching site {plan.site} every {args.interval:g}s (SIGTERM or Ctrl-C stops)", flush=True
    )
    while True:
        try:
            signals.get(timeout=args.interval)
            return
        except queue.Empty:
            pass
        try:
            changes = _apply(args, plan, keys).changes
        except CommandError as exc:
            # A failed run is reported and tried again: the watcher outlives a bad moment.
            print(f"converging site {plan.site} failed: {exc}", file=sys.stderr, flush=True)
            continue
        for change in changes:
            print(f"site {plan.site}: {change}", flush=True)


def _down(args: argparse.Namespace) -> int:
    from bridge.apply import remove_site
    from controller.ovsdb import OvsdbError

    plan, _ = _site_plan(args)
    _require_root("down")
    with _switch(args) as switch:
        try:
            removed = remove_site(plan, netns=args.netns, run_dir=_run_dir(args), switch=switch)
        except (ApplyError, OvsdbError) as exc:
            raise CommandError(str(exc)) from None
    text = "\n".join(f"  {r}" for r in removed) or "  nothing to remove"
    emit({"site": plan.site, "removed": list(removed)}, args.json, f"site {plan.site}:\n{text}")
    return exitcodes.OK


def _status(args: argparse.Namespace) -> int:
    from bridge.apply import port_guards
    from bridge.status import read_tunnels
    from bridge.status import render as render_tunnels
    from bridge.watch import path_report
    from controller.ovsdb import OvsdbError

    plan, _ = _site_plan(args)
    _require_root("status")
    try:
        require_netns(args.netns)
    except ApplyError:
        raise CommandError(
            f"network namespace {args.netns!r} does not exist: site {plan.site} is not up "
            f"there; bring it up with `overcast bridge up ... --netns {args.netns}`"
        ) from None
    rows = read_tunnels(plan, args.netns, int(time.time()))
    peers = [r.as_dict() for r in rows]
    interfaces = [wg.name for wg in plan.wireguard_interfaces]
    lines = [f"site {plan.site}: {', '.join(interfaces)} in {args.netns}, {len(rows)} tunnel(s)"]
    lines += render_tunnels(rows)
    data: dict[str, Any] = {
        "site": plan.site,
        "interface": interfaces[0],
        "interfaces": interfaces,
        "peers": peers,
    }
    guards: tuple[PortGuard, ...] = ()
    with _switch(args) as switch:
        if switch is not None:
            try:
                guards = port_guards(plan, netns=args.netns, switch=switch)
                datapath = switch.datapath_type(plan.switch)
                data["paths"] = path_report(plan, switch)
            except (ApplyError, OvsdbError) as exc:
                raise CommandError(str(exc)) from None
            data |= _guard_data(plan.switch, datapath, guards)
            lines += _guard_text(plan.switch, datapath, guards)
            lines += _path_text(data["paths"])
    emit(data, args.json, "\n".join(lines))
    # A peer that has never completed a handshake is a tunnel that is down; an unguarded
    # switch port lets a host reach the site's kernel, and a guarded kernel port cuts the
    # kernel off the switch (bridge.portguard).
    tunnels_up = all(r.up for r in rows)
    guards_right = all(g.wanted == g.guarded for g in guards)
    # A peer's path that is down is a tunnel that is down, even while another carries it.
    paths_up = all(p["state"] == "up" for g in data.get("paths", []) for p in g["paths"])
    return exitcodes.OK if tunnels_up and guards_right and paths_up else exitcodes.FAILURE


def _path_text(groups: list[dict[str, Any]]) -> list[str]:
    from bridge.watch import group_name

    if not groups:
        return []
    lines = ["  paths (fast failover, first listed is preferred):"]
    for g in groups:
        lines.append(f"    {group_name(g['segment'])} to {g['peer']}:")
        for p in g["paths"]:
            bfd = f"BFD {p['bfd']} (remote {p['bfd_remote']}), {p['flaps']} flaps"
            if p["last_resort"]:
                bfd += "; kept forwarding: no path is up (last resort)"
            lines.append(
                f"      {p['port']:<14} {p['underlay']:<10} {p['state']:<5} {p['role']:<8} {bfd}"
            )
    return lines


def _guard_data(bridge: str, datapath: str, guards: tuple[PortGuard, ...]) -> dict[str, Any]:
    return {
        "switch": {
            "bridge": bridge,
            "datapath_type": datapath,
            "ports": [
                {
                    "name": g.port.name,
                    "type": g.port.type,
                    "role": str(g.port.role),
                    "should_be_guarded": g.wanted,
                    "guarded": g.guarded,
                }
                for g in guards
            ],
        },
        "unguarded_ports": [g.port.name for g in guards if g.unguarded],
        "cut_off_ports": [g.port.name for g in guards if g.cut_off],
    }


def _guard_text(bridge: str, datapath: str, guards: tuple[PortGuard, ...]) -> list[str]:
    from bridge.portguard import Role

    lines = [f"  switch {bridge} ({datapath} datapath), {len(guards)} interface(s):"]
    for g in guards:
        if g.unguarded:
            state = "UNGUARDED: the site's kernel sees its frames (overcast bridge up ... --ovsdb)"
        elif g.cut_off:
            why = "the kernel's own port" if g.port.role is Role.KERNEL else "no guard wanted"
            state = f"CUT OFF: guarded, but {why} (overcast bridge up ... --ovsdb)"
        elif g.guarded:
            state = "guarded"
        elif g.port.role is Role.SWITCH:
            state = "not guarded (the kernel datapath needs none)"
        else:
            state = "left to the kernel" if g.port.role is Role.KERNEL else "nothing to guard"
        lines.append(f"    {g.port.name:<15} {g.port.type:<9} {g.port.role:<12} {state}")
    return lines


def _watch_paths(args: argparse.Namespace) -> int:
    import signal
    import threading

    from bridge.watch import PathWatch, VswitchdControl, WatchError
    from controller.cli import host_port
    from controller.ovsdb import OvsdbError
    from overcast import metrics

    config = load_config(args.config)
    plan, _ = _site_plan(args)
    if args.metrics:
        host, port = host_port(args.metrics, "--metrics")
        try:
            metrics.serve(port, host)
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on {args.metrics}: {exc.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    hold = config.bridge.failover.hold_down_s
    watch = PathWatch(
        plan, hold_down_s=hold, ovsdb=args.ovsdb, vswitchd=VswitchdControl(args.ovs_rundir)
    )
    logger = logging.getLogger("bridge")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # failovers and failbacks are this command's output
    logger.info(
        "site %s: watching %d paths to %d peers, hold-down %gs",
        plan.site,
        len(watch.ports),
        len(watch.hold.groups),
        hold,
    )
    try:
        watch.run(stop)
    except (WatchError, OvsdbError) as exc:
        raise CommandError(str(exc)) from None
    return exitcodes.OK


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.run_dir) if args.run_dir else RUN_ROOT / args.netns


@contextmanager
def _switch(args: argparse.Namespace) -> Iterator[Ovsdb | None]:
    from controller.ovsdb import Ovsdb, OvsdbError

    if not args.ovsdb:
        yield None
        return
    try:
        db = Ovsdb(args.ovsdb)
    except OvsdbError as exc:
        raise CommandError(str(exc)) from None
    with db:
        yield db


def _text(plan: SitePlan) -> str:
    lines = [f"site {plan.site}:"]
    for wg in plan.wireguard_interfaces:
        lines += [
            f"  WireGuard {wg.name} on underlay {wg.underlay}: {wg.address}/{wg.prefixlen} "
            f"port {wg.listen_port} mtu {wg.mtu}",
            f"    public key {wg.public_key}",
            f"    peers: {len(wg.peers)}",
        ]
        for peer in wg.peers:
            allowed = ", ".join(str(n) for n in peer.allowed_ips)
            lines.append(f"      {peer.site:<10} {peer.endpoint:<22} allowed {allowed}")
    for seg in plan.segments:
        lines.append(
            f"  segment {seg.segment}: vni {seg.vni} vlan {seg.vlan} on {plan.switch}, "
            f"inner MTU {seg.inner_mtu}, TCP MSS {seg.mss_ipv4} (IPv4) / {seg.mss_ipv6} (IPv6)"
        )
        lines += [_tunnel_text(t) for t in seg.tunnels]
    if plan.liveness:
        lines.append(f"  BFD only (the routes follow them), vni 0 on {plan.switch}:")
        lines += [_tunnel_text(t) for t in plan.liveness]
    if plan.announced:
        lines.append(f"  announces: {', '.join(map(str, plan.announced))}")
    for r in plan.routes:
        lines.append(
            f"  route {r.prefix} ({r.segment}) to {r.peer} via {wg.name}, "
            f"path MTU {r.path_mtu}, TCP MSS {r.mss}"
        )
    return "\n".join(lines)


def _tunnel_text(t: VxlanTunnel) -> str:
    bfd = f" bfd {t.bfd['min_tx']} ms" if t.bfd else ""
    return (
        f"    {t.name:<14} to {t.peer:<10} over {t.underlay:<10} "
        f"{t.local} -> {t.remote} udp/{t.dstport}{bfd}"
    )
