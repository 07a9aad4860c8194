"""`overcast controller ...`: run the OpenFlow controller, or show what it would install."""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from controller.pipeline import PIPELINE, SwitchPlan, check_fabric, plan_switch
from overcast import exitcodes
from overcast.cli import CommandError, add_json_flag, emit, load_config
from overcast.config import OvercastConfig
from overcast.fabric import Fabric

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.fabric import Discovered

DEFAULT_LISTEN = "0.0.0.0:6653"  # 6653: the IANA port for OpenFlow


def register(sub: Any) -> None:
    ctl = sub.add_parser(
        "controller",
        help="the OpenFlow controller that programs every site's switch",
        description=(
            "The controller turns overcast.yaml into OpenFlow 1.3 flows on every site's "
            "switch. It derives each switch's ports itself: access ports from the config "
            "(sites.SITE.switch.access, by interface name) and from OVSDB (ports tagged "
            "external_ids:overcast-segment=NAME), tunnel ports from the bridge plan. Segments "
            "are isolated, MACs are learned and installed at every site of their segment, "
            "broadcast is flooded with split horizon, anything else is dropped. No NORMAL."
        ),
        epilog=(
            "examples:\n"
            "  overcast controller plan --config overcast.yaml --site hq\n"
            "  overcast controller run --config overcast.yaml --listen 192.0.2.10:6653 \\\n"
            "      --tls-cert ctl.pem --tls-key ctl.key --tls-ca ca.pem"
        ),
    )
    cmds = ctl.add_subparsers(
        dest="controller_command", metavar="CONTROLLER_COMMAND", required=True
    )

    p = cmds.add_parser(
        "run",
        help="listen for switches and program them (runs until SIGTERM/Ctrl-C)",
        description=(
            "Listen for OpenFlow 1.3 switches on --listen. When a switch whose datapath id "
            "is a site's connects, its ports are read, the plan is computed and installed; "
            "port changes (OpenFlow or OVSDB) are re-planned and only the difference is "
            "sent. Unknown switches are logged and left empty. SIGHUP re-reads the config "
            "and re-plans every switch. Use TLS outside a lab. Exits 0 on SIGTERM."
        ),
        epilog=(
            "examples:\n"
            "  overcast -v controller run --config overcast.yaml \\\n"
            "      --listen 192.0.2.10:6653 --metrics 127.0.0.1:9310\n"
            "  overcast controller run ... --tls-cert ctl.pem --tls-key ctl.key --tls-ca ca.pem"
        ),
    )
    _common(p)
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address the switches connect to (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics",
    )
    p.add_argument(
        "--api",
        metavar="HOST:PORT",
        help="serve the read-only JSON API (switches, segments, MACs, flows, ACL hits) on "
        "http://HOST:PORT/; keep it on loopback or a management network",
    )
    p.add_argument(
        "--audit",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="compare every switch with its plan this often and undo drift such as "
        "hand-added flows (default 30; 0 turns it off)",
    )
    p.add_argument(
        "--ovsdb",
        action="append",
        default=[],
        metavar="SITE=REMOTE",
        help="read SITE's ports from this OVSDB (unix:/path/db.sock or tcp:HOST:PORT); "
        "overrides sites.SITE.switch.ovsdb (repeatable)",
    )
    tls = p.add_argument_group(
        "TLS", "mutual TLS on the OpenFlow channel (switch targets then read ssl:HOST:PORT)"
    )
    tls.add_argument("--tls-cert", metavar="PEM", help="the controller's certificate")
    tls.add_argument("--tls-key", metavar="PEM", help="the controller's private key")
    tls.add_argument("--tls-ca", metavar="PEM", help="CA that signed the switches' certificates")
    p.set_defaults(handler=_run, long_running=True)

    p = cmds.add_parser(
        "plan",
        help="print the flows and groups one site's switch would get (dry run)",
        description=(
            "Compute the plan for --site from the config alone, without any switch. Port "
            "numbers come from --ofport NAME=NUMBER; ports not given are numbered 1, 2, ... "
            "in order (config access ports, then tunnels). Exit 2 if the config is invalid."
        ),
        epilog=(
            "examples:\n"
            "  overcast controller plan --config overcast.yaml --site hq\n"
            "  overcast controller plan ... --site hq --ofport eth1=5 --json"
        ),
    )
    _common(p)
    p.add_argument("--site", required=True, help="the site whose switch to plan")
    p.add_argument(
        "--ofport",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="the OpenFlow number of a port (repeatable)",
    )
    add_json_flag(p)
    p.set_defaults(handler=_plan)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="path to overcast.yaml")
    p.add_argument(
        "--fabric",
        metavar="FILE",
        help="use this fabric JSON instead of deriving it ({switches: {SITE: {site, "
        "bridge, dpid, ports: [...]}}}); for tests and odd set-ups",
    )


FABRIC_SHAPE = (
    '; a fabric is JSON: {"switches": {NAME: {"site": ..., "bridge": ..., "dpid": ..., '
    '"ports": [...]}}}'
)


def load_fabric(path: str, config: OvercastConfig) -> Fabric:
    """Read and check a fabric file; any problem is a USAGE error naming the fix."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read fabric {path}: {exc.strerror}", exitcodes.USAGE) from None
    except UnicodeDecodeError:
        raise CommandError(
            f"fabric {path} is not UTF-8 text; give the fabric JSON file", exitcodes.USAGE
        ) from None
    try:
        fabric = Fabric.model_validate_json(text)
    except pydantic.ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            + (FABRIC_SHAPE if e["type"] == "json_invalid" else "")
            for e in exc.errors()
        ]
        raise CommandError(
            f"{len(lines)} problem(s) in fabric {path}:\n" + "\n".join(lines), exitcodes.USAGE
        ) from None
    problems = check_fabric(config, fabric)
    if problems:
        raise CommandError(
            f"{len(problems)} problem(s) in fabric {path}:\n"
            + "\n".join(f"  {p}" for p in problems),
            exitcodes.USAGE,
        )
    return fabric


def host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(
            f"{flag} {value!r}: write HOST:PORT, e.g. 192.0.2.10:6653 or [2001:db8::1]:6653",
            exitcodes.USAGE,
        )
    return host, int(port)


def _run(args: argparse.Namespace) -> int:
    from controller.app import Controller, ControllerError, Tls
    from controller.discovery import Discovery
    from overcast import metrics

    if args.audit < 0:
        raise CommandError(f"--audit {args.audit:g}: give seconds >= 0", exitcodes.USAGE)
    tls_files = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_files) and not all(tls_files):
        raise CommandError(
            "TLS needs all of --tls-cert, --tls-key and --tls-ca (or none of them)",
            exitcodes.USAGE,
        )
    tls = Tls(*tls_files) if all(tls_files) else None
    config = load_config(args.config)
    overrides = dict(_site_value(v, "--ovsdb", config) for v in args.ovsdb)
    source = FabricSource(config, load_fabric(args.fabric, config) if args.fabric else None)
    host, port = host_port(args.listen, "--listen")
    # Connections and programming are the controller's normal output: show them by default.
    logger = logging.getLogger("controller")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    # SimpleQueue.put is reentrant, so a signal handler may call it (queue docs).
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: signals.put(signum))
    if args.metrics:
        m_host, m_port = host_port(args.metrics, "--metrics")
        try:
            metrics.serve(m_port, m_host)
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on {args.metrics}: {exc.strerror}") from None
    controller = Controller(config, source.fabric(), host, port, tls, args.audit)
    try:
        controller.start()
    except ControllerError as exc:
        raise CommandError(str(exc)) from None
    if args.api:
        from controller import api

        a_host, a_port = host_port(args.api, "--api")
        try:
            api.serve(a_host, a_port, controller.ask)
        except OSError as exc:
            raise CommandError(f"cannot serve the API on {args.api}: {exc.strerror}") from None
        logger.info("read-only API on http://%s/", args.api)
    remotes: dict[str, tuple[str, str]] = {}
    for site, where in config.sites.items():
        remote = overrides.get(site) or where.switch.ovsdb
        if remote:
            remotes[site] = (remote, where.switch.bridge)
    discovery = Discovery(remotes, lambda site, seen: source.discovered(controller, site, seen))
    discovery.start()
    while signals.get() == signal.SIGHUP:
        source.reload(controller, args)
    discovery.stop()
    logger.info("controller stopping (signal)")
    return exitcodes.OK


class FabricSource:
    """The running config and fabric: derived from the config and what OVSDB reports
    (`controller.fabric.derive`), unless a fabric file overrides it. Called from the main
    thread (SIGHUP) and the OVSDB watchers, so it locks."""

    def __init__(self, config: OvercastConfig, override: Fabric | None) -> None:
        self.config, self.override = config, override
        self.seen: dict[str, Discovered] = {}
        self.lock = threading.Lock()

    def fabric(self) -> Fabric:
        from controller.fabric import derive  # the bridge plan behind it is heavy to import

        return self.override or derive(self.config, self.seen)

    def discovered(self, controller: Controller, site: str, seen: Discovered) -> None:
        from controller.fabric import tag_problems

        logger = logging.getLogger("controller")
        for problem in tag_problems(self.config, site, seen):
            logger.warning("%s", problem)
        with self.lock:
            self.seen[site] = seen
            self._apply(controller)
        logger.info(
            "site %s: OVSDB reports dpid %s and %d tagged ports",
            site,
            f"{seen.dpid:#x}" if seen.dpid else "(no bridge yet)",
            len(seen.tags),
        )

    def reload(self, controller: Controller, args: argparse.Namespace) -> None:
        """SIGHUP: read the config (and fabric file) again; on a problem keep the old ones."""
        logger = logging.getLogger("controller")
        try:
            config = load_config(args.config)
            override = load_fabric(args.fabric, config) if args.fabric else None
        except CommandError as exc:
            logger.error("reload failed, keeping the running config: %s", exc)
            return
        logger.info("reloading %s", args.config)
        with self.lock:
            self.config, self.override = config, override
            self._apply(controller)

    def _apply(self, controller: Controller) -> None:
        fabric = self.fabric()
        problems = check_fabric(self.config, fabric)
        if problems:
            logging.getLogger("controller").error(
                "the derived fabric does not fit the config, keeping the old one: %s",
                "; ".join(problems),
            )
            return
        controller.reload(self.config, fabric)


def _site_value(value: str, flag: str, config: OvercastConfig) -> tuple[str, str]:
    site, _, remote = value.partition("=")
    if site not in config.sites or not remote:
        raise CommandError(
            f"{flag} {value!r}: write SITE=REMOTE with a site of the config "
            f"({', '.join(config.sites)}), e.g. hq=unix:/var/run/openvswitch/db.sock",
            exitcodes.USAGE,
        )
    return site, remote


def _plan(args: argparse.Namespace) -> int:
    from controller.fabric import derive

    config = load_config(args.config)
    fabric = load_fabric(args.fabric, config) if args.fabric else derive(config)
    switch = next((s for s in fabric.switches.values() if s.site == args.site), None)
    if switch is None:
        known = ", ".join(sorted(s.site for s in fabric.switches.values())) or "none"
        raise CommandError(
            f"the fabric has no switch for site {args.site!r}; sites with switches: {known}",
            exitcodes.USAGE,
        )
    given = dict(_ofport(v) for v in args.ofport)
    unknown = sorted(set(given) - {p.name for p in switch.ports})
    if unknown:
        # A misspelt port would otherwise be ignored and the plan use a made-up number.
        raise CommandError(
            f"--ofport {', '.join(unknown)}: no such port on site {args.site}'s switch; "
            f"its ports: {', '.join(p.name for p in switch.ports)}",
            exitcodes.USAGE,
        )
    free = (n for n in range(1, 0xFFFFFF00) if n not in given.values())
    ofports = {p.name: given[p.name] if p.name in given else next(free) for p in switch.ports}
    plan = plan_switch(config, fabric, args.site, ofports)
    emit(_plan_json(plan, ofports), args.json, _plan_text(plan, ofports))
    return exitcodes.OK


def _ofport(value: str) -> tuple[str, int]:
    name, _, number = value.partition("=")
    if not name or not number.isdigit() or not 0 < int(number) <= 0xFFFFFF00:
        raise CommandError(f"--ofport {value!r}: write NAME=NUMBER, e.g. h1=5", exitcodes.USAGE)
    return name, int(number)


def _plan_json(plan: SwitchPlan, ofports: dict[str, int]) -> dict[str, Any]:
    return {
        "site": plan.site,
        "tables": [{"name": t.name, "id": t.table_id, "miss": t.miss} for t in PIPELINE],
        "ofports": ofports,
        "groups": [
            {
                "group_id": g.group_id,
                "type": g.type,
                "buckets": [[str(a) for a in b] for b in g.buckets],
            }
            for g in plan.groups
        ],
        "flows": [
            {
                "table": f.table,
                "priority": f.priority,
                "cookie": f.cookie,
                "match": {k: v for k, v in f.match.fields},
                "actions": [str(a) for a in f.actions],
                "write_metadata": f.write_metadata,
                "goto": f.goto,
            }
            for f in plan.flows
        ],
    }


def _plan_text(plan: SwitchPlan, ofports: dict[str, int]) -> str:
    lines = [f"site {plan.site}: {len(plan.groups)} groups, {len(plan.flows)} flows"]
    lines.append("ports: " + ", ".join(f"{n}={p}" for n, p in ofports.items()))
    lines += [f"  {g}" for g in plan.groups]
    lines += [f"  {f}" for f in plan.flows]
    return "\n".join(lines)
