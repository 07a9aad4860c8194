"""`overcast guard ...`: replay BGP data against the guard config, import BGPalerter
prefixes, compare VRP files."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgp_guard.errors import InputError
from bgp_guard.feeds import RIS_LIVE_URL
from overcast import collector, exitcodes
from overcast.cli import CommandError, add_json_flag, emit, load_config_section, port_number

# What a command needs is imported by its handler: `overcast --help` starts without the
# detectors, the feeds and Prometheus, and a replay of a config compiled before
# (`policycache`) without the schema (pydantic) either.
if TYPE_CHECKING:
    from bgp_guard.aspa import AspaSet
    from bgp_guard.asrel import AsRelationships
    from bgp_guard.config import Feeds, GuardConfig
    from bgp_guard.engine import Guard
    from bgp_guard.policycache import Compiled
    from bgp_guard.rpki import VrpSet
    from bgp_guard.sinks import Sink
    from bgp_guard.sinks.config import Retry
    from bgp_guard.sinks.outbox import Transport
    from bgp_guard.state import Store, StoredEvent


def _relative(config_path: str, path: str) -> Path:
    """Data files named in overcast.yaml are relative to the directory of that file."""
    return Path(config_path).parent / path


def load_guard_config(config_path: str) -> GuardConfig:
    """The `guard:` section of `config_path`, with its bgpalerter_file merged in. The other
    sections are not this command's business (`overcast validate` checks them), nor are
    their schemas loaded."""
    guard, notes, _ = _load_guard_config(config_path)
    _print_notes(notes)
    return guard


def _print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        print(f"overcast: note: {note}", file=sys.stderr)


def _load_guard_config(config_path: str) -> tuple[GuardConfig, list[str], list[Path]]:
    """The section, the BGPalerter import's notes, and the files merged into it."""
    from bgp_guard import bgpalerter
    from bgp_guard.config import GuardConfig

    guard = load_config_section(config_path, "guard", GuardConfig, GuardConfig.problems)
    if not guard.bgpalerter_file:
        return guard, [], []
    source = _relative(config_path, guard.bgpalerter_file)
    try:
        imported, notes = bgpalerter.load(source)
        return bgpalerter.merge(guard, imported, str(source)), notes, [source]
    except InputError as exc:
        raise CommandError(f"guard.bgpalerter_file: {exc}", exitcodes.USAGE) from None


def require_monitoring(guard: GuardConfig, config_path: str) -> None:
    """Without anything to monitor every run "finds nothing" and exits 0: a false all-clear."""
    everything = (guard.leak_scope == "all" and guard.asrel_file) or (
        guard.aspa.scope == "all" and guard.aspa.file
    )
    if not (guard.prefixes or guard.own_asns or everything):
        raise CommandError(
            f"{config_path}: the guard: section monitors nothing; add guard.prefixes "
            "(e.g. 192.0.2.0/24: {origins: [64500]}), guard.own_asns or guard.bgpalerter_file",
            exitcodes.USAGE,
        )


def build_guard(config_path: str, cached: bool = False, config: GuardConfig | None = None) -> Guard:
    """A Guard for `config_path` (its guard: section, if already loaded: `config`), with its
    VRP, AS-relationship and ASPA files loaded. `cached`: the policy compiled by an earlier
    run on the same config is used if there is one, and this one is kept if not."""
    from bgp_guard import policycache
    from bgp_guard.policy import Policy

    compiled = policycache.load(config_path) if cached else None
    if compiled is not None:
        _print_notes(compiled.notes)
        return guard_for(compiled, config_path)
    notes: list[str] = []
    merged: list[Path] = []
    if config is None:
        config, notes, merged = _load_guard_config(config_path)
    _print_notes(notes)
    compiled = policycache.Compiled(
        Policy.of(config),
        config.vrp_file,
        config.asrel_file,
        config.aspa.file,
        tuple(notes),
        tuple((str(p.resolve()), policycache.digest(p)) for p in merged),
    )
    guard = guard_for(compiled, config_path)
    require_monitoring(config, config_path)  # before it is kept: a cached one was checked
    if cached:
        policycache.store(config_path, compiled)
    return guard


def guard_for(compiled: Compiled, config_path: str) -> Guard:
    """The Guard of a compiled policy, with the data files it names read now."""
    from bgp_guard.aspa import load_aspas
    from bgp_guard.asrel import load_asrel
    from bgp_guard.engine import Guard
    from bgp_guard.rpki import load_vrps

    vrps: VrpSet | None = None
    asrel: AsRelationships | None = None
    aspas: AspaSet | None = None
    key = "guard.vrp_file"
    try:
        if compiled.vrp_file:
            vrps = load_vrps(_relative(config_path, compiled.vrp_file))
        key = "guard.asrel_file"
        if compiled.asrel_file:
            asrel = load_asrel(_relative(config_path, compiled.asrel_file))
        key = "guard.aspa.file"
        if compiled.aspa_file:
            aspas = load_aspas(_relative(config_path, compiled.aspa_file))
    except InputError as exc:
        raise CommandError(
            f"{config_path}: {key}: {exc} (paths are relative to the config file)",
            exitcodes.USAGE,
        ) from None
    return Guard(compiled.policy, vrps=vrps, asrel=asrel, aspas=aspas)


def _replay(args: argparse.Namespace) -> int:
    from bgp_guard.metrics import unserved

    # The RIB and the decoded messages are hundreds of thousands of young tuples, and no
    # cycle among them: the collector would walk them over and over.
    collector.quiet(100_000, 100)
    with unserved():  # a replay serves no metrics: not even prometheus_client is imported
        return _replay_files(args)


def _replay_files(args: argparse.Namespace) -> int:
    from bgp_guard import replay

    guard = build_guard(args.config, cached=True)
    sinks = _sinks(args)
    try:
        updates, stats = replay.merged(args.files, guard.wanted())
    except InputError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    fired = 0
    started = time.perf_counter()
    last = 0.0
    for update in updates:
        events = guard.process(update)
        last = update.time
        if events:
            fired += len(events)
            for event in events:
                for sink in sinks:
                    sink.write(event)
    for event in guard.finish(last):
        fired += 1
        for sink in sinks:
            sink.write(event)
    elapsed = time.perf_counter() - started
    summary = guard.summary()
    errors = sum(s.errors for s in stats)
    records = sum(s.records for s in stats)
    skipped = sum(s.skipped for s in stats)
    dropped = sum(s.dropped for s in stats)
    unwatched = f"{skipped} records" + (f" and {dropped} updates" if dropped else "")
    print(
        f"overcast: {records} records from {len(args.files)} file(s) in {elapsed:.2f}s "
        f"({records / max(elapsed, 1e-9):,.0f}/s), {summary['updates']} updates checked"
        + (f" ({unwatched} about no monitored prefix skipped)" if skipped or dropped else "")
        + f", {errors} bad record(s), {summary['stale']} stale update(s) dropped, "
        f"{summary['peer_downs']} peer session(s) down, "
        f"{summary['rib_routes']} routes from "
        f"{summary['peers']} peers; events: "
        + (", ".join(f"{n} {state}" for state, n in sorted(summary["events"].items())) or "none"),
        file=sys.stderr,
    )
    # A file that yielded no BGP data at all, only errors, is not an MRT or RIS-live file:
    # "no alerts" from it would be a false all-clear.
    unreadable = [
        path
        for path, stat in zip(args.files, stats, strict=True)
        if stat.errors and not (stat.updates or stat.peer_downs)
    ]
    if unreadable:
        print(
            f"overcast: no BGP data could be read from {', '.join(unreadable)}; give MRT "
            "(plain, gzip or bzip2) or RIS-live JSON-lines files",
            file=sys.stderr,
        )
    if fired:
        return exitcodes.ALERT
    return exitcodes.USAGE if unreadable else exitcodes.OK


def _sinks(args: argparse.Namespace) -> list[Sink]:
    from bgp_guard.sinks.jsonl import JsonLines
    from bgp_guard.sinks.text import Text

    sinks: list[Sink] = [JsonLines(sys.stdout) if args.json else Text(sys.stdout)]
    if args.syslog:
        from bgp_guard.sinks.syslog import Syslog  # asyncio with it: not on replay's start-up

        try:
            sinks.append(Syslog(args.syslog))
        except (ValueError, OSError) as exc:
            raise CommandError(f"--syslog: {exc}", exitcodes.USAGE) from None
    return sinks


def _watch(args: argparse.Namespace) -> int:
    import asyncio

    import bgp_guard.metrics
    from bgp_guard import watch
    from bgp_guard.aspa import load_aspas
    from bgp_guard.feeds.tcp_md5 import TcpMd5Error
    from overcast import metrics

    config = load_guard_config(args.config)
    guard = build_guard(args.config, config=config)
    feeds = config.feeds
    if args.ris_live is not None:
        feeds = _with_ris_live(feeds, args.ris_live)
    if feeds.bgp is None and feeds.bmp is None and feeds.ris_live is None:
        raise CommandError(
            f"{args.config}: guard.feeds has no feed; add guard.feeds.bgp (a BGP session), "
            "guard.feeds.bmp (a BMP station) or guard.feeds.ris_live (RIPE RIS-live), or "
            "give --ris-live",
            exitcodes.USAGE,
        )
    sinks = _sinks(args)
    if args.metrics_port:
        bgp_guard.metrics.create_all()
        try:
            metrics.serve(args.metrics_port)
        except OSError as exc:
            raise CommandError(f"--metrics-port {args.metrics_port}: {exc}") from None
    vrp_file = watch.VrpFile(_relative(args.config, config.vrp_file)) if config.vrp_file else None
    store, transports, retries = _notice_sinks(args.config, config)
    aspa_file = (
        watch.DataFile(_relative(args.config, config.aspa.file), load_aspas)
        if config.aspa.file
        else None
    )

    async def run() -> watch.WatchStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            live = await watch.start_feeds(feeds, config, Path(args.config).parent)
        except InputError as exc:
            raise CommandError(
                f"{args.config}: guard.feeds.bgp.neighbours: {exc}", exitcodes.USAGE
            ) from None
        except TcpMd5Error as exc:
            raise CommandError(f"{args.config}: guard.feeds.bgp: {exc}") from None
        except OSError as exc:
            raise CommandError(
                f"cannot open a feed socket: {exc}; check the addresses and ports under "
                "guard.feeds (ports below 1024 need root)"
            ) from None
        print(f"overcast: watching {len(live)} feed(s); stop with Ctrl-C", file=sys.stderr)
        outbox = Outbox(store, transports, retries)
        notifier = Notifier(store, list(transports), config.notify, time.time(), outbox.wake)
        page = None
        try:
            if args.status_port:
                from bgp_guard import status

                board = status.StatusBoard(store, live)
                try:
                    page = await status.serve(board, args.status_port, stop)
                except OSError as exc:
                    raise CommandError(f"--status-port {args.status_port}: {exc}") from None
                print(
                    f"overcast: status page on http://127.0.0.1:{args.status_port}/",
                    file=sys.stderr,
                )
            return await watch.run(
                guard,
                live,
                sinks,
                stop,
                vrp_file=vrp_file,
                aspa_file=aspa_file,
                notifier=notifier,
                outbox=outbox,
            )
        finally:
            if page is not None:
                await page.cleanup()
            await asyncio.gather(*(f.close() for f in live))

    from bgp_guard.notify import Notifier
    from bgp_guard.sinks.outbox import Outbox

    try:
        stats = asyncio.run(run())
    finally:
        store.close()
    p50, p99 = stats.percentile(0.5), stats.percentile(0.99)
    latency = (
        f"; update -> event latency p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"
        if p50 is not None and p99 is not None
        else ""
    )
    print(f"overcast: {stats.updates} updates, {stats.events} events{latency}", file=sys.stderr)
    return exitcodes.ALERT if stats.events else exitcodes.OK


def _publish(args: argparse.Namespace) -> int:
    import asyncio

    from bgp_guard import replay
    from bgp_guard.scale import jetstream

    config = load_guard_config(args.config)
    require_monitoring(config, args.config)
    try:
        items, _ = replay.merged(args.files)
    except InputError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    started = time.perf_counter()
    try:
        sent = asyncio.run(jetstream.publish(args.nats, config, items))
    except (OSError, TimeoutError) as exc:
        raise CommandError(f"--nats {args.nats}: {exc or 'no answer'}") from None
    elapsed = time.perf_counter() - started
    print(
        f"overcast: published {sent} updates in {elapsed:.2f}s ({sent / max(elapsed, 1e-9):,.0f}/s)",
        file=sys.stderr,
    )
    return exitcodes.OK


def _worker(args: argparse.Namespace) -> int:
    import asyncio
    import socket

    from bgp_guard.scale import jetstream

    config = load_guard_config(args.config)
    require_monitoring(config, args.config)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    worker = jetstream.Worker(args.nats, config, name)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"overcast: worker {name} on {args.nats}; stop with Ctrl-C", file=sys.stderr)
        await worker.run(stop)

    try:
        asyncio.run(run())
    except (OSError, TimeoutError) as exc:
        raise CommandError(f"--nats {args.nats}: {exc or 'no answer'}") from None
    print(
        f"overcast: worker {name}: {worker.processed} updates, {worker.alerts} alerts published",
        file=sys.stderr,
    )
    return exitcodes.OK


def _state_path(config_path: str, guard: GuardConfig) -> Path:
    return _relative(config_path, guard.state_file)


def _open_store(config_path: str, guard: GuardConfig) -> Store:
    from bgp_guard.state import StateError, Store

    try:
        return Store(_state_path(config_path, guard))
    except StateError as exc:
        raise CommandError(f"guard.state_file: {exc}", exitcodes.USAGE) from None


def _notice_sinks(
    config_path: str, guard: GuardConfig
) -> tuple[Store, dict[str, Transport], dict[str, Retry]]:
    """The state file and the guard.sinks transports; a bad sink is exit 2."""
    from bgp_guard.sinks.build import transports

    try:
        built, retries = transports(guard.sinks, Path(config_path).parent)
    except InputError as exc:
        raise CommandError(f"{config_path}: {exc}", exitcodes.USAGE) from None
    return _open_store(config_path, guard), built, retries


def _find_event(store: Store, text: str) -> StoredEvent:
    found = store.find(text)
    if not found:
        raise CommandError(
            f"no event matches {text!r}; list them with 'overcast guard events --config C'",
            exitcodes.USAGE,
        )
    if len(found) > 1:
        keys = "\n  ".join(e.key for e in found[:10])
        raise CommandError(
            f"{text!r} matches {len(found)} events; give more of the key:\n  {keys}",
            exitcodes.USAGE,
        )
    return found[0]


def _operator(args: argparse.Namespace, what: str) -> int:
    """`guard ack` / `guard silence`: store it, and queue the notice that says so; the
    running `guard watch` delivers it within a second."""
    from bgp_guard.notify import Notifier

    guard = load_guard_config(args.config)
    store = _open_store(args.config, guard)
    try:
        event = _find_event(store, args.event)
        now = time.time()
        if what == "ack":
            store.ack(event.key, args.by, args.note or "", now)
        else:
            store.silence(event.key, now + args.duration)
        Notifier(store, list(guard.sinks), guard.notify, now).operator(what, event, now)
        fresh = store.event(event.key)
    finally:
        store.close()
    assert fresh is not None
    done = (
        "acknowledged"
        if what == "ack"
        else "silenced until "
        + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now + args.duration))
    )
    emit(
        {"key": fresh.key, "acked_by": fresh.acked_by, "silenced_until": fresh.silenced_until},
        args.json,
        f"{fresh.key}: {done}; {len(guard.sinks)} sink(s) will say so",
    )
    return exitcodes.OK


def _ack(args: argparse.Namespace) -> int:
    return _operator(args, "ack")


def _silence(args: argparse.Namespace) -> int:
    return _operator(args, "silence")


def _events(args: argparse.Namespace) -> int:
    guard = load_guard_config(args.config)
    store = _open_store(args.config, guard)
    try:
        events = store.events(open_only=not args.all)
        depths = store.queue_depths(list(guard.sinks))
    finally:
        store.close()
    rows = [
        {"key": e.key, "open": e.open, "state": e.state, "changed_at": e.changed_at,
         "acked_by": e.acked_by, "silenced_until": e.silenced_until,
         "rationale": e.event["rationale"]}
        for e in events
    ]  # fmt: skip
    lines = [
        f"{'OPEN  ' if e.open else 'closed'} {e.key}"
        + (f"  [acked by {e.acked_by}]" if e.acked_by else "")
        + (" [silenced]" if e.silenced(time.time()) else "")
        for e in events
    ]
    queued = ", ".join(f"{name} {n}" for name, n in depths.items() if n)
    text = "\n".join(lines) or ("no events" if args.all else "no open events")
    emit(
        {"events": rows, "queued": depths},
        args.json,
        text + (f"\nqueued: {queued}" if queued else ""),
    )
    return exitcodes.ALERT if any(e.open for e in events) else exitcodes.OK


def _duration(text: str) -> float:
    """ "90s", "30m", "2h", "1d" (or plain seconds) for --for."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write e.g. 30m, 2h, 1d"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be above zero")
    return seconds


def _with_ris_live(feeds: Feeds, url: str) -> Feeds:
    """`feeds` with its RIS-live feed (guard.feeds.ris_live, or the defaults) at `url`."""
    from pydantic import ValidationError

    from bgp_guard.config import RisLiveWebsocket

    settings = feeds.ris_live.model_dump() if feeds.ris_live is not None else {}
    try:
        ris_live = RisLiveWebsocket.model_validate({**settings, "url": url})
    except ValidationError as exc:
        problem = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise CommandError(f"--ris-live: {problem}", exitcodes.USAGE) from None
    return feeds.model_copy(update={"ris_live": ris_live})


def _import_bgpalerter(args: argparse.Namespace) -> int:
    from bgp_guard import bgpalerter

    try:
        config, notes = bgpalerter.load(args.file)
    except InputError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    for note in notes:
        print(f"overcast: note: {note}", file=sys.stderr)
    print(bgpalerter.to_yaml(config), end="")
    return exitcodes.OK


def _roa_diff(args: argparse.Namespace) -> int:
    from bgp_guard.engine import Guard
    from bgp_guard.rpki import load_vrps
    from bgp_guard.sinks.text import render

    config = load_guard_config(args.config)
    require_monitoring(config, args.config)
    try:
        old, new = load_vrps(args.old), load_vrps(args.new)
    except InputError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    events = Guard(config, vrps=old).replace_vrps(new, time.time())
    text = "\n".join(render(e) for e in events) or "no ROA change touches a monitored prefix"
    emit(events, args.json, text)
    return exitcodes.ALERT if events else exitcodes.OK


def _aspa_check(args: argparse.Namespace) -> int:
    from bgp_guard import aspa_check, replay
    from bgp_guard.aspa import load_aspas
    from bgp_guard.asrel import load_asrel

    config = load_guard_config(args.config)
    if not config.own_asns:
        raise CommandError(
            f"{args.config}: guard.own_asns is empty; list our ASNs (e.g. own_asns: "
            "{64500: {}}) so their ASPAs can be checked",
            exitcodes.USAGE,
        )
    if not config.aspa.file:
        raise CommandError(
            f"{args.config}: guard.aspa.file is not set; name the rpki-client -j or "
            "Routinator (--enable-aspa) output that holds our published ASPAs",
            exitcodes.USAGE,
        )
    key = "guard.aspa.file"
    try:
        aspas = load_aspas(_relative(args.config, config.aspa.file))
        key = "guard.asrel_file"
        asrel = load_asrel(_relative(args.config, config.asrel_file)) if config.asrel_file else None
    except InputError as exc:
        raise CommandError(f"{args.config}: {key}: {exc}", exitcodes.USAGE) from None
    try:
        updates, stats = replay.merged(args.files)
        seen = aspa_check.observe(updates, frozenset(config.own_asns))
    except InputError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    read = sum(s.updates for s in stats)
    print(f"overcast: {read} updates read from {len(args.files)} file(s)", file=sys.stderr)
    if not read:
        raise CommandError(
            f"no BGP data could be read from {', '.join(args.files)}; give MRT (plain, gzip or "
            "bzip2) or RIS-live JSON-lines files",
            exitcodes.USAGE,
        )
    reports = aspa_check.compare(seen, aspas, asrel)
    emit(reports, args.json, aspa_check.render(reports))
    return exitcodes.OK if all(r["ok"] for r in reports) else exitcodes.ALERT


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--syslog",
        metavar="ADDR",
        help="also send events as RFC 5424 syslog to host:port (UDP) or a socket path",
    )
    p.add_argument("--json", action="store_true", help="print events as JSON lines")


def register(sub: Any) -> None:
    guard = sub.add_parser(
        "guard",
        help="watch BGP for hijacks, route leaks and RPKI problems on our prefixes",
        description=(
            "Check BGP updates against the 'guard:' section of overcast.yaml: wrong origins "
            "and fake first hops (ARTEMIS E|0, E|1, S|0, S|1), squatting (Q|0), too-specific "
            "announcements, AS_SET origins, AS-path rules, RPKI invalids (RFC 6811), route "
            "leaks (valley-free, CAIDA AS relationships), ASPA-invalid paths "
            "(draft-ietf-sidrops-aspa-verification), visibility loss, and new neighbours "
            "of our ASNs. Exit 3 when alerts fired."
        ),
        epilog=(
            "examples:\n"
            "  overcast guard replay --config overcast.yaml updates.20160811.1600.gz\n"
            "  overcast guard watch --config overcast.yaml --json\n"
            "  overcast guard import-bgpalerter prefixes.yml >> overcast.yaml\n"
            "  overcast guard roa-diff --config overcast.yaml vrps-old.json vrps.json\n"
            "  overcast guard aspa-check --config overcast.yaml bview.gz updates.*.gz"
        ),
    )
    cmds = guard.add_subparsers(dest="guard_command", metavar="SUBCOMMAND", required=True)

    p = cmds.add_parser(
        "replay",
        help="replay MRT files against the guard config and print alert events",
        description=(
            "Replay BGP data files (MRT updates or RIB dumps, plain, gzip or bzip2; or "
            "RIS-live JSON lines) merged in "
            "timestamp order through the detectors of the 'guard:' section, printing each "
            "event transition (ongoing, withdrawn, resolved) with the rationale for it. "
            "A peer whose session leaves Established (an MRT STATE_CHANGE, a RIS-live "
            "RIS_PEER_STATE 'down') withdraws all its routes, as the collector did. "
            "vrp_file, asrel_file, aspa.file and bgpalerter_file are read relative to the config "
            "file. A summary goes to stderr. Exit 3 if any alert fired; else 2 if a file held "
            "no readable BGP data, 0 if none.\n\n"
            "examples:\n"
            "  overcast guard replay --config overcast.yaml updates.20160811.1600.gz\n"
            "  overcast guard replay --config overcast.yaml --json bview.gz updates.*.gz\n"
            "  overcast guard replay --config overcast.yaml ris-live-stream.json"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("files", nargs="+", metavar="FILE", help="MRT or RIS-live JSON-lines files")
    _output_flags(p)
    p.set_defaults(handler=_replay, exit_at_once=True)

    p = cmds.add_parser(
        "watch",
        help="run the live feeds (BGP session, BMP, RIS-live) and print alert events as they happen",
        description=(
            "Open the feeds under guard.feeds and run every update through the detectors, "
            "printing each event transition at once. The feeds:\n"
            "  bgp       a receive-only BGP session, passive and/or active; a\n"
            "            neighbour with a password_file (mode 0600, relative to the\n"
            "            config file) gets TCP-MD5 (RFC 2385)\n"
            "  bmp       a BMP station routers connect to\n"
            "  ris_live  the RIPE RIS-live websocket (or --ris-live): subscribed to the\n"
            "            monitored prefixes with their more-specifics and to our ASNs;\n"
            "            reconnects with backoff. While it is down a feed-down event is\n"
            "            ongoing (resolved when it is back), the log says so and\n"
            "            overcast_bgp_feed_connected is 0; the routes held are kept, since\n"
            "            a lost feed is not a withdrawal.\n"
            "When the "
            "vrp_file changes (rpki-client and Routinator rewrite it), it is reloaded: the "
            "ROA changes that touch our prefixes are printed, and the routes already held "
            "that a changed ROA covers are validated again, raising or resolving their "
            "RPKI events; the same for guard.aspa.file, re-verifying the routes whose "
            "path crosses an AS whose ASPA changed. Runs until SIGINT/SIGTERM, then prints "
            "the update -> event latency on stderr. Exit 3 if any alert fired.\n\n"
            "examples:\n"
            "  overcast guard watch --config overcast.yaml --json --syslog 127.0.0.1:514\n"
            "  overcast guard watch --config overcast.yaml --ris-live\n"
            "  overcast guard watch --config overcast.yaml --ris-live ws://127.0.0.1:8080/v1/ws/"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument(
        "--ris-live",
        nargs="?",
        const=RIS_LIVE_URL,
        metavar="URL",
        help=(
            "also subscribe to RIS-live at URL (default without URL: %(const)s), with the "
            "settings of guard.feeds.ris_live if any"
        ),
    )
    p.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics (feed counters, events) on http://127.0.0.1:PORT/metrics",
    )
    p.add_argument(
        "--status-port",
        type=port_number,
        metavar="PORT",
        help=(
            "serve the status page (ongoing and recent events, feed health; live, no "
            "reload) on http://127.0.0.1:PORT/, its data as JSON at /api/status"
        ),
    )
    _output_flags(p)
    p.set_defaults(handler=_watch, long_running=True)

    for name, what in (("ack", "acknowledge"), ("silence", "silence")):
        p = cmds.add_parser(
            name,
            help=f"{what} an event: the sinks say so"
            + ("; no repeats until it closes" if name == "ack" else " and stay quiet for a time"),
            description=(
                "Acknowledge an open event: every sink gets an 'acknowledged' notice naming "
                "who, repeat notices stop, and the close is still sent. A new open of the "
                "same event needs a new acknowledgement."
                if name == "ack"
                else "Silence an event for a time: the sinks get one 'silenced' notice, then "
                "nothing about this event (no repeats, opens or closes) until it expires."
            )
            + " EVENT is the event's key or a unique part of it (see 'guard events'); the "
            "running 'guard watch' delivers the notice within a second.\n\nexamples:\n"
            + (
                "  overcast guard ack --config overcast.yaml 203.0.113.0/25 --by alice "
                "--note 'upstream filtering'"
                if name == "ack"
                else "  overcast guard silence --config overcast.yaml visibility-loss --for 2h"
            ),
        )
        p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
        p.add_argument("event", metavar="EVENT", help="event key, or a unique part of it")
        if name == "ack":
            p.add_argument("--by", required=True, metavar="NAME", help="who acknowledges")
            p.add_argument("--note", metavar="TEXT", help="why, or what is being done")
            p.set_defaults(handler=_ack)
        else:
            p.add_argument(
                "--for", dest="duration", required=True, type=_duration, metavar="TIME",
                help="how long: 90s, 30m, 2h, 1d",
            )  # fmt: skip
            p.set_defaults(handler=_silence)
        add_json_flag(p)

    p = cmds.add_parser(
        "publish",
        help="publish BGP data files to NATS JetStream for guard workers",
        description=(
            "Scale-out collector: read MRT or RIS-live files (as replay does) and publish "
            "every update under a monitored prefix to NATS JetStream, subject "
            "bgp.updates.<shard> (one shard per monitored prefix, 16 in all), in batches. "
            "Workers ('guard worker') decide them.\n\nexample:\n"
            "  overcast guard publish --config overcast.yaml --nats nats://127.0.0.1:4222 "
            "updates.gz"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("--nats", required=True, metavar="URL", help="nats://host:port")
    p.add_argument("files", nargs="+", metavar="FILE", help="MRT or RIS-live JSON-lines files")
    p.set_defaults(handler=_publish)

    p = cmds.add_parser(
        "worker",
        help="decide a share of the monitored prefixes from NATS JetStream",
        description=(
            "Scale-out detector: hold a fair share of the 16 shards (a NATS KV bucket keeps "
            "who holds what; a worker that stops renewing for 3 s loses its shards), replay "
            "each shard from its first update and follow it, and publish every alert to "
            "bgp.alerts with a Nats-Msg-Id, so JetStream keeps each alert once even when a "
            "shard is replayed by the worker that took it over. Runs until SIGINT/SIGTERM."
            "\n\nexample:\n"
            "  overcast guard worker --config overcast.yaml --nats nats://127.0.0.1:4222 --name w1"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("--nats", required=True, metavar="URL", help="nats://host:port")
    p.add_argument("--name", metavar="NAME", help="this worker's name (default: host-pid)")
    p.set_defaults(handler=_worker, long_running=True)

    p = cmds.add_parser(
        "events",
        help="list the events in the state file (open ones, or --all)",
        description=(
            "List the events guard watch stored in guard.state_file, with their keys (for "
            "ack and silence) and the notices still queued per sink. Exit 3 if any is open."
            "\n\nexamples:\n  overcast guard events --config overcast.yaml\n"
            "  overcast guard events --config overcast.yaml --all --json"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("--all", action="store_true", help="closed events too")
    add_json_flag(p)
    p.set_defaults(handler=_events)

    p = cmds.add_parser(
        "import-bgpalerter",
        help="print a BGPalerter prefixes.yml as our guard: section",
        description=(
            "Read a BGPalerter prefixes.yml as is and print the equivalent 'guard:' section "
            "for overcast.yaml. Fields without an equivalent (group, excludeMonitors, ...) "
            "are named on stderr. To use the file unchanged instead, set "
            "'guard: {bgpalerter_file: prefixes.yml}'.\n\n"
            "example:\n  overcast guard import-bgpalerter prefixes.yml >> overcast.yaml"
        ),
    )
    p.add_argument("file", metavar="FILE", help="BGPalerter prefixes.yml")
    p.set_defaults(handler=_import_bgpalerter)

    p = cmds.add_parser(
        "roa-diff",
        help="ROA changes between two VRP files that touch our prefixes",
        description=(
            "Compare two VRP files (rpki-client -j, Routinator json or csv) and list every "
            "added or removed ROA that covers or lies within a monitored prefix, with what "
            "it does to the RPKI validity of our announcements. Exit 3 if any.\n\n"
            "example:\n  overcast guard roa-diff --config overcast.yaml vrps-old.json vrps.json"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("old", metavar="OLD", help="the earlier VRP file")
    p.add_argument("new", metavar="NEW", help="the later VRP file")
    add_json_flag(p)
    p.set_defaults(handler=_roa_diff)

    p = cmds.add_parser(
        "aspa-check",
        help="our ASPAs against the providers our ASNs really use",
        description=(
            "Read BGP data (MRT updates or RIB dumps, or RIS-live JSON lines) and, for each "
            "ASN under guard.own_asns, list the ASes that heard our routes from us (the AS "
            "left of ours in a path) next to the providers our ASPA in guard.aspa.file lists:\n"
            "  missing  an upstream carries our routes but is not in the ASPA: paths\n"
            "           through it verify Invalid, so fix the ASPA before routers drop them\n"
            "  stale    a provider in the ASPA carried none of our routes in the data\n"
            "An AS whose own ASPA names ours is our customer, and one the CAIDA file "
            "(guard.asrel_file) calls our peer or customer is not a provider; neither is "
            "expected in the ASPA. Without a CAIDA file a peer shows as missing: leave it out. "
            "Exit 0 if every ASPA matches, 3 if not, 2 for bad input.\n\n"
            "example:\n"
            "  overcast guard aspa-check --config overcast.yaml bview.gz updates.*.gz --json"
        ),
    )
    p.add_argument("--config", required=True, metavar="C", help="overcast.yaml")
    p.add_argument("files", nargs="+", metavar="FILE", help="MRT or RIS-live JSON-lines files")
    add_json_flag(p)
    p.set_defaults(handler=_aspa_check)
