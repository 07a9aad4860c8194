"""`overcast lab ...`: build, inspect and remove one-machine labs."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import names
from overcast import exitcodes
from overcast.cli import CommandError, add_json_flag, emit, load_config
from overcast.config import load

# Building a lab needs OVS, pyroute2 and cryptography: the handlers import lab.build and
# lab.flows when they run, so that `overcast --help` and `validate` start without them.
if TYPE_CHECKING:
    from lab.flows import SwitchState
    from lab.plan import LabPlan


def progress(line: str) -> None:
    print(f"==> {line}", file=sys.stderr, flush=True)


def register(sub: Any) -> None:
    lab = sub.add_parser(
        "lab",
        help="build and remove the one-machine lab (namespaces, per-site OVS, tunnels)",
        description=(
            "The lab builds every site of an overcast.yaml on this machine: each site is a "
            "network namespace with its own Open vSwitch (userspace datapath), hosts are "
            "namespaces wired to it, and a stand-in internet joins the sites' underlay "
            "addresses. Sites are joined by the bridge's WireGuard + VXLAN tunnels and every "
            "switch is programmed by our controller, which runs in its own namespace on a "
            "management network. Everything a lab creates is named after its lab id (oc + 4 "
            "characters) and written to /run/overcast/<lab-id>/ before it is created, so "
            "`overcast lab down` removes it all, even after a crash. Needs root."
        ),
        epilog=(
            "examples:\n"
            "  overcast lab up overcast.yaml      build (or finish building) the lab\n"
            "  overcast lab status --json         what exists, per lab\n"
            "  overcast lab down --all            remove every lab on this machine"
        ),
    )
    cmds = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    p = cmds.add_parser(
        "up",
        help="build the lab for a config (re-running it finishes or keeps the same lab)",
        description=(
            "Build namespaces, links, per-site OVS, hosts on the L2 segments (at the inner "
            "MTU the bridge plan computes), a host on a LAN behind each site for each routed "
            "(L3) segment it announces a prefix on (the prefix's 10th address, the site its "
            "gateway at the 1st), WireGuard + VXLAN tunnels and the controller for CONFIG, "
            "then wait until every switch holds the flows the controller plans for it. The "
            "lab id is derived from the config's path unless --id is given, so running `up` "
            "again on the same file checks and completes (or repairs) the same lab instead "
            "of building a second one. Ctrl-C while it builds removes the lab again. It "
            "ends with pings to try between two hosts of one segment."
        ),
        epilog="example:\n  overcast lab up overcast.yaml --id oc1234",
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument("--id", dest="lab_id", help="lab id to use (oc + 4 lower-case characters)")
    add_json_flag(p)
    p.set_defaults(handler=_up)

    p = cmds.add_parser(
        "down",
        help="remove a lab and everything it created",
        description=(
            "Stop the lab's processes and remove its namespaces, sockets and files, using the "
            "registry it wrote while building (so this also works after a crash). With no "
            "argument, removes the only lab there is. --all also removes namespaces named "
            "like a lab's whose state dir is gone."
        ),
        epilog="examples:\n  overcast lab down oc1234\n  overcast lab down --all",
    )
    p.add_argument("lab_id", metavar="LAB_ID", nargs="?", help="the lab to remove")
    p.add_argument("--all", action="store_true", help="remove every lab on this machine")
    p.set_defaults(handler=_down)

    p = cmds.add_parser(
        "status",
        help="list labs and whether their namespaces and daemons are alive",
        description=(
            "Show each lab, its namespaces, daemons, switches and hosts (on L2 and routed "
            "segments). Exit 1 if any is missing."
        ),
        epilog="example:\n  overcast lab status --json",
    )
    p.add_argument("lab_id", metavar="LAB_ID", nargs="?", help="only this lab")
    add_json_flag(p)
    p.set_defaults(handler=_status)

    p = cmds.add_parser(
        "demo",
        help="the whole story on the built-in lab, step by step, into one HTML report",
        description=(
            "Build a lab from the built-in config: two enterprise sites (hq, branch) and two "
            "cloud sites at two vendors (cloud-a at vendor-a, cloud-b at vendor-b), with the "
            "L2 segment 'finance' stretched across all four in VXLAN inside WireGuard, over "
            "two carriers (isp-a, preferred, and isp-b). Each site's OVS is programmed only by "
            "our controller. Then, step by step: ping and iperf3 (TCP) between every pair of "
            "sites; isp-a fails under a 1 ms probe stream and comes back (the gap of the "
            "failover, and of the failback after the hold-down); an attacker AS hijacks our "
            "prefix and the BGP guard alerts; a user signs in through the SSO gateway. A step "
            "whose part is not built yet is reported as not run. Progress is printed as it "
            "goes; at the end one self-contained HTML file (--report) shows the topology "
            "with the active paths, the timeline and every figure. Removes the lab (keep it "
            "with --keep). Exit 1 if any step that ran failed."
        ),
        epilog=(
            "examples:\n  overcast lab demo\n  overcast lab demo --report /tmp/demo.html --json"
        ),
    )
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    p.add_argument("--id", dest="lab_id", help="lab id to use instead of a random one")
    p.add_argument("--seconds", type=int, default=2, help="length of each iperf3 run (default 2)")
    p.add_argument(
        "--report",
        default="overcast-demo.html",
        metavar="FILE",
        help="where to write the HTML report (default ./overcast-demo.html)",
    )
    add_json_flag(p)
    p.set_defaults(handler=_demo)

    p = cmds.add_parser(
        "scenario",
        help="run a named scenario that proves one promise on a lab of its own",
        description=(
            "Each scenario builds the lab it needs (with a fresh lab id), acts, checks, prints "
            "a pass/fail summary with its figures, and removes the lab again, also when a "
            "check fails or you press Ctrl-C. Only scenarios that really run are listed. "
            "Exit 0 if every check passed, 1 if any failed, 2 for an unknown scenario."
        ),
        epilog=(
            "examples:\n  overcast lab scenario --list\n  overcast lab scenario stretch --json"
        ),
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="the scenario to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios and what each proves")
    p.add_argument("--id", dest="lab_id", help="lab id to use instead of a random one")
    add_json_flag(p)
    p.set_defaults(handler=_scenario)


def _lab_id(text: str) -> str:
    try:
        return names.check_lab_id(text)
    except ValueError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CommandError("the lab needs root (network namespaces); run it with sudo")


def _up(args: argparse.Namespace) -> int:
    from lab import build, flows, hint, interrupt
    from lab.plan import STATE_ROOT, PlanError

    config = load_config(args.config)
    lab_id = _lab_id(args.lab_id) if args.lab_id else names.lab_id_for(args.config)
    _require_root()
    interrupt.redeliver_lost_interrupts()
    try:
        with interrupt.removed_on_interrupt(STATE_ROOT / lab_id, progress):
            plan = build.up(
                config,
                lab_id,
                str(Path(args.config).resolve()),
                Path(args.config).read_text(),
                progress,
            )
            progress(f"lab {lab_id}: waiting for the controller to program every switch")
            flows.wait_programmed(config, plan)
            if config.underlays:
                progress(f"lab {lab_id}: waiting for every path's BFD session")
                flows.wait_paths_up(plan)
    except build.LabConflict as exc:
        raise CommandError(str(exc)) from None
    except PlanError as exc:
        build.down(STATE_ROOT / lab_id)
        raise CommandError(str(exc), exitcodes.USAGE) from None
    except Exception as exc:
        raise CommandError(
            f"lab {lab_id} is not (fully) up: {exc}; run `overcast lab up` again to finish "
            f"it or `overcast lab down {lab_id}` to remove it"
        ) from exc
    hosts = host_rows(plan)
    lines = [
        f"lab {lab_id} is up: {len(plan.sites)} sites, {len(hosts)} hosts"
        + (f" ({len(plan.routed_hosts)} on routed segments)" if plan.routed_hosts else "")
    ]
    lines += [f"  {host_line(h)}" for h in hosts]
    lines += hint.first_steps(plan)
    lines.append(f"remove it with: overcast lab down {lab_id}")
    emit(build.state_of(plan.state_dir).as_dict() | {"hosts": hosts}, args.json, "\n".join(lines))
    return exitcodes.OK


def _down(args: argparse.Namespace) -> int:
    from lab import build, netns
    from lab.plan import STATE_ROOT

    if args.all and args.lab_id:
        raise CommandError("give a LAB_ID or --all, not both", exitcodes.USAGE)
    lab_id = _lab_id(args.lab_id) if args.lab_id else None
    _require_root()
    labs = build.lab_dirs()
    if lab_id:
        # Removing a lab that is already gone is fine: down is a desired state.
        targets = [STATE_ROOT / lab_id]
    elif args.all:
        # Namespaces of labs whose state dir is gone too: down finds them by name.
        orphans = set(names.lab_ids_of(netns.all_names())) - {p.name for p in labs}
        targets = labs + [STATE_ROOT / o for o in sorted(orphans)]
    elif len(labs) <= 1:
        targets = labs
    else:
        raise CommandError(
            f"there are {len(labs)} labs ({', '.join(p.name for p in labs)}); "
            "name one or use --all",
            exitcodes.USAGE,
        )
    for state_dir in targets:
        build.down(state_dir, progress)
        print(f"lab {state_dir.name} removed")
    if not targets:
        print("no labs to remove")
    return exitcodes.OK


def _status(args: argparse.Namespace) -> int:
    from lab import build

    dirs = build.lab_dirs()
    if args.lab_id:
        lab_id = _lab_id(args.lab_id)
        dirs = [d for d in dirs if d.name == lab_id]
        if not dirs:
            raise CommandError(f"no lab {args.lab_id} on this machine", exitcodes.USAGE)
    labs, lines, healthy = [], [] if dirs else ["no labs"], True
    for state_dir in dirs:
        state = build.state_of(state_dir)
        switches, hosts, problem = _switches_and_hosts(state_dir)
        ok = state.healthy and problem is None and all(s.programmed for s in switches)
        healthy &= ok
        hosts = [h | {"alive": state.namespaces.get(h["netns"], False)} for h in hosts]
        labs.append(
            state.as_dict()
            | {
                "healthy": ok,
                "switches": [asdict(s) | {"programmed": s.programmed} for s in switches],
                "hosts": hosts,
            }
        )
        alive_ns = sum(state.namespaces.values())
        alive_pr = sum(1 for pid in state.processes.values() if pid)
        lines.append(
            f"{state.lab_id}  {'ok' if ok else 'DEGRADED'}  "
            f"namespaces {alive_ns}/{len(state.namespaces)}  "
            f"daemons {alive_pr}/{len(state.processes)}  from {state.source}"
        )
        lines += [f"  missing netns {n}" for n, ok in state.namespaces.items() if not ok]
        lines += [f"  not running: {p}" for p, pid in state.processes.items() if not pid]
        lines += [
            f"  switch {s.site}: {'connected' if s.connected else 'NOT CONNECTED'}, "
            f"{s.flows}/{s.planned} planned flows"
            + (f", missing ports {', '.join(s.unresolved)}" if s.unresolved else "")
            for s in switches
        ]
        lines += [f"  host {host_line(h)}" + ("" if h["alive"] else "  MISSING") for h in hosts]
        if problem:
            lines.append(f"  switches and hosts: unknown ({problem})")
    emit({"labs": labs}, args.json, "\n".join(lines))
    return exitcodes.OK if healthy else exitcodes.FAILURE


def _switches_and_hosts(
    state_dir: Path,
) -> tuple[list[SwitchState], list[dict[str, Any]], str | None]:
    """Each site switch's controller connection and flows, and the lab's hosts, or why
    they cannot be read."""
    from lab import build, flows

    if not (state_dir / build.CONFIG_FILE).exists():
        return [], [], None  # a lab without sites (sso, hijack, leak) has no switches
    try:
        config = load(state_dir / build.CONFIG_FILE)
        plan = build.plan_of(config, state_dir.name)
        return flows.states(config, plan), host_rows(plan), None
    except Exception as exc:
        return [], [], str(exc).splitlines()[0]


def host_rows(plan: LabPlan) -> list[dict[str, Any]]:
    """Every host of the lab, as `up` and `status` show it: those on L2 segments (ports of
    the site switches), then those on routed segments (on a LAN behind their site)."""
    rows: list[dict[str, Any]] = [
        {
            "host": h.label,
            "segment": h.segment,
            "mode": "l2",
            "netns": h.netns,
            "address": str(h.address),
            "mac": h.mac,
            "mtu": h.mtu,
        }
        for h in plan.hosts
    ]
    rows += [
        {
            "host": h.label,
            "segment": h.segment,
            "mode": "l3",
            "netns": h.netns,
            "address": str(h.address),
            "gateway": str(h.gateway.ip),
            "mtu": h.mtu,
        }
        | (
            {"address6": str(h.address6), "gateway6": str(h.gateway6.ip)}
            if h.address6 and h.gateway6
            else {}
        )
        for h in plan.routed_hosts
    ]
    return rows


def host_line(row: dict[str, Any]) -> str:
    line = f"{row['host']:<22} {row['address']:<16} netns {row['netns']}"
    if row["mode"] == "l3":
        line += f"  (routed, via {row['gateway']}" + (
            f"; {row['address6']})" if "address6" in row else ")"
        )
    return line


def _demo(args: argparse.Namespace) -> int:
    from lab import demo, demo_report

    if not 1 <= args.seconds <= 60:
        raise CommandError("--seconds must be between 1 and 60", exitcodes.USAGE)
    report = Path(args.report).resolve()
    if not report.parent.is_dir() or not os.access(report.parent, os.W_OK):
        raise CommandError(
            f"--report {args.report}: {report.parent} is not a writable directory; "
            "give a path in one",
            exitcodes.USAGE,
        )
    lab_id = _lab_id(args.lab_id) if args.lab_id else names.new_lab_id()
    _require_root()
    config, text = demo.built_in()
    run = demo.run(config, text, lab_id, seconds=args.seconds, keep=args.keep, progress=progress)
    report.write_text(demo_report.render(run), encoding="utf-8")
    not_run = [s.name for s in run.steps if s.status == "not run"]
    lines = [
        f"lab {lab_id}: {len(config.sites)} sites, {len(run.hosts)} hosts",
        *(f"  {s.name:<9} {s.status:<8} {demo_report.headline(s)}" for s in run.steps),
        f"result: {'ok' if run.ok else 'FAILED'}"
        + (f" (not run: {', '.join(not_run)})" if not_run else "")
        + f", {run.seconds:.0f} s in all",
        f"lab kept: remove it with `overcast lab down {lab_id}`"
        if args.keep
        else f"lab {lab_id} removed",
        f"report: {report}",
    ]
    emit(run.as_dict() | {"report": str(report)}, args.json, "\n".join(lines))
    return exitcodes.OK if run.ok else exitcodes.FAILURE


def _scenario(args: argparse.Namespace) -> int:
    from lab import interrupt, scenarios

    known = scenarios.registry()
    if args.list:
        if args.name:
            raise CommandError("give a NAME or --list, not both", exitcodes.USAGE)
        emit(
            {"scenarios": [{"name": s.name, "promise": s.promise} for s in known.values()]},
            args.json,
            "\n".join(f"{s.name:<10} {s.promise}" for s in known.values()),
        )
        return exitcodes.OK
    if not args.name:
        raise CommandError("name a scenario, or list them with --list", exitcodes.USAGE)
    if args.name not in known:
        raise CommandError(
            f"no scenario {args.name!r}; there are: {', '.join(known)} "
            "(`overcast lab scenario --list`)",
            exitcodes.USAGE,
        )
    lab_id = _lab_id(args.lab_id) if args.lab_id else None
    _require_root()
    interrupt.redeliver_lost_interrupts()
    result = scenarios.run(known[args.name], lab_id, progress)
    emit(result.as_dict(), args.json, result.summary())
    return exitcodes.OK if result.ok else exitcodes.FAILURE
