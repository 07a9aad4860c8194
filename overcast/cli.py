"""The `overcast` command.

Each part adds its own subcommands from `<part>/cli.py` (a `register(subparsers)` function),
so the shell stays thin and a part ships commands only once they work.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from overcast import __version__, exitcodes, log

# The schema (pydantic, and every part's section) is imported by the commands that load
# it: a part's command reads its own section (`load_config_section`) and starts without the
# others, and a command that needs no config (or a cached one) without pydantic.
if TYPE_CHECKING:
    import pydantic

    from overcast.config import L2Segment, L3Segment, OvercastConfig
    from overcast.configfile import InvalidConfig
    from overcast.model import ConfigError

Section = TypeVar("Section", bound="pydantic.BaseModel")

# Each part's command and the module that registers it.
PARTS = {
    "lab": "lab.cli",
    "controller": "controller.cli",
    "bridge": "bridge.cli",
    "guard": "bgp_guard.cli",
    "gateway": "gateway.cli",
    "attest": "attest.cli",
}

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """An error the user can act on: printed as one line, no traceback."""

    def __init__(self, message: str, code: int = exitcodes.FAILURE) -> None:
        super().__init__(message)
        self.code = code


def load_config(path: str) -> OvercastConfig:
    """Load a config for a subcommand; invalid configs become a USAGE error listing every problem."""
    from overcast.config import load
    from overcast.configfile import InvalidConfig

    try:
        return load(path)
    except InvalidConfig as exc:
        raise _invalid(path, exc) from None


def load_config_section(
    path: str,
    name: str,
    model: type[Section],
    problems: Callable[[Section], list[ConfigError]] = lambda _: [],
) -> Section:
    """Load one part's section of a config (`overcast.configfile.load_section`), for a command
    that needs nothing else; invalid, it is a USAGE error listing every problem."""
    from overcast.configfile import InvalidConfig, load_section

    try:
        return load_section(path, name, model, problems)
    except InvalidConfig as exc:
        raise _invalid(path, exc) from None


def _invalid(path: str, exc: InvalidConfig) -> CommandError:
    return CommandError(f"{len(exc.errors)} problem(s) in {path}:\n{exc}", exitcodes.USAGE)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print a command's result: `data` as JSON with --json, else the human `text`."""
    print(json.dumps(data, indent=2, default=str) if as_json else text)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def port_number(text: str) -> int:
    """argparse type for a TCP/UDP port: a bad one is a usage error (exit 2) naming the range."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; give 1-65535")
    return int(text)


def listen_address(text: str) -> tuple[str, int]:
    """argparse type for HOST:PORT (IPv6 in brackets): a bad one is a usage error (exit 2)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:9320 or [2001:db8::1]:9320"
        )
    return host, int(port)


def _validate(args: argparse.Namespace) -> int:
    from overcast.config import load, located_warnings
    from overcast.configfile import InvalidConfig

    try:
        config = load(args.file)
    except InvalidConfig as exc:
        if args.json:
            emit({"valid": False, "errors": [vars_of(e) for e in exc.errors]}, True, "")
        else:
            print(f"{args.file}: {len(exc.errors)} problem(s)", file=sys.stderr)
            for err in exc.errors:
                print(f"  {err.render(args.file)}", file=sys.stderr)
        return exitcodes.USAGE
    summary = summarize(config)
    # Valid, so the file was read once already: it is UTF-8 and small.
    warned = located_warnings(config, Path(args.file).read_text(encoding="utf-8"))
    text = _summary_text(args.file, summary)
    if warned:
        text += f"\n{len(warned)} warning(s):\n" + "\n".join(
            f"  warning: {w.render(args.file)}" for w in warned
        )
    data = {"valid": True, "summary": summary, "warnings": [vars_of(w) for w in warned]}
    emit(data, args.json, text)
    return exitcodes.OK


def vars_of(err: Any) -> dict[str, Any]:
    return {"path": err.path, "message": err.message, "line": err.line, "column": err.column}


def summarize(config: OvercastConfig) -> dict[str, Any]:
    return {
        "sites": {
            n: {"role": s.role, "underlay": _underlay_summary(config, n)}
            for n, s in config.sites.items()
        },
        "underlays": config.underlay_names(),
        "providers": sorted(config.providers),
        "segments": {n: _segment_summary(s) for n, s in config.segments.items()},
        "guard_prefixes": len(config.guard.prefixes),
        "gateway_apps": len(config.gateway.apps) if config.gateway else 0,
    }


def _underlay_summary(config: OvercastConfig, site: str) -> str | dict[str, str]:
    if not config.underlays:
        return str(config.sites[site].underlay)
    return {n: str(a) for n, a in config.addresses(site).items()}


def _segment_summary(seg: L2Segment | L3Segment) -> dict[str, Any]:
    from overcast.config import L2Segment

    out: dict[str, Any] = {"mode": seg.mode, "sites": list(seg.sites)}
    if isinstance(seg, L2Segment):
        return out | {"vni": seg.vni, "vlan": seg.vlan}
    return out | {
        "prefixes": [str(p) for p in seg.prefixes],
        "announce": {site: [str(p) for p in ps] for site, ps in seg.announce.items()},
    }


def _summary_text(path: str, summary: dict[str, Any]) -> str:
    lines = [f"{path}: valid"]
    lines.append(f"  sites: {len(summary['sites'])}")
    for name, site in summary["sites"].items():
        underlay = site["underlay"]
        if isinstance(underlay, dict):
            underlay = ", ".join(f"{n} {a}" for n, a in underlay.items())
        lines.append(f"    {name:<10} {site['role']:<10} underlay {underlay}")
    lines.append(f"  segments: {len(summary['segments'])}")
    for name, seg in summary["segments"].items():
        what = (
            f"vni {seg['vni']} vlan {seg['vlan']}"
            if seg["mode"] == "l2"
            else ", ".join(seg["prefixes"])
        )
        lines.append(f"    {name:<10} {seg['mode']}  {what}  sites {', '.join(seg['sites'])}")
    lines.append(
        f"  guard prefixes: {summary['guard_prefixes']}, gateway apps: {summary['gateway_apps']}"
    )
    return "\n".join(lines)


def _named_part(argv: Sequence[str]) -> str | None:
    """The part command `argv` runs, if any: only that part is then imported, so that
    `overcast guard replay` does not start by loading the controller and the gateway."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command if command in PARTS else None


class _Parser(argparse.ArgumentParser):
    """Every command's parser (subcommands get the class of their parent): descriptions
    and examples are printed with the line breaks they were written with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="overcast",
        description=(
            "Overcast stretches enterprise L2/L3 segments into cloud providers over WireGuard, "
            "programs every site's Open vSwitch, watches BGP for hijacks and leaks, and fronts "
            "SaaS apps with an SSO gateway. Everything is described by one overcast.yaml."
        ),
        epilog=(
            "exit codes: 0 ok, 1 operation failed, 2 bad arguments or invalid config, "
            "3 alerts found.  Start with: overcast validate overcast.yaml"
        ),
    )
    parser.add_argument("--version", action="version", version=f"overcast {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    parser.add_argument("--log-json", action="store_true", help="log JSON lines on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate",
        help="check an overcast.yaml and summarise it",
        description=(
            "Check FILE against the schema and cross-checks (unknown sites, reused VNIs and "
            "VLANs, overlapping prefixes, bad addresses). Prints every problem with its "
            "line, path and fix. Exit 0 if valid, 2 if not."
        ),
        epilog=(
            "examples:\n"
            "  overcast validate overcast.yaml\n"
            "  overcast validate --json overcast.yaml | jq '.errors[] | .path + \": \" + .message'"
        ),
    )
    p.add_argument("file", metavar="FILE", help="path to overcast.yaml")
    add_json_flag(p)
    p.set_defaults(handler=_validate)

    named = _named_part(argv)
    for command, module in PARTS.items():
        if named in (None, command) and importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # python-ovs imports eventlet, which warns on import; it is a dependency's business, not
    # something an operator can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="eventlet")
    warnings.filterwarnings("ignore", message="Eventlet is deprecated")
    program = argv is None  # run as the `overcast` program, not called by other code
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    # A command that runs until stopped sets `long_running` (set_defaults): its log lines
    # carry their time.
    log.setup(args.verbose, args.log_json, timestamps=getattr(args, "long_running", False))
    code = _run(args)
    if program and getattr(args, "exit_at_once", False):
        # A batch command that leaves nothing to clean up (its files closed, its output
        # flushed below) sets `exit_at_once`: the interpreter's teardown would free every
        # object one by one (~20 ms after a replay).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        print(f"overcast: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        # A library's sys.exit (uvicorn exits 3 when it cannot bind) must not pass its own
        # code through: 3 here means "alerts found".
        if exc.code in (None, 0):
            return exitcodes.OK
        print(f"overcast: stopped (exit {exc.code} from a library; see above)", file=sys.stderr)
        return exitcodes.FAILURE
    except BrokenPipeError:
        # `overcast ... | head` closed our stdout: not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exitcodes.OK
    except Exception as exc:
        logging.getLogger("overcast").debug("unhandled error", exc_info=True)
        print(
            f"overcast: internal error: {exc!r} (run with -vv for the traceback)", file=sys.stderr
        )
        return exitcodes.FAILURE
