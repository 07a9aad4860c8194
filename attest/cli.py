"""`overcast attest ...`: attested join. A site's agent, enrolment, the verifier, status."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from overcast import exitcodes
from overcast.cli import CommandError, add_json_flag, emit, listen_address, load_config
from overcast.config import OvercastConfig

log = logging.getLogger("overcast.attest")
DEFAULT_PREFIX = "oc"


def register(sub: Any) -> None:
    attest = sub.add_parser(
        "attest",
        help="attested join: sites get tunnels and keys only after their TPM proves what they run",
        description=(
            "Each site's TPM (a host's /dev/tpmrm0, or a swtpm in the lab) holds an endorsement "
            "key and an attestation key enrolled once with the enterprise. Before it joins, "
            "the site measures its software and rendered config into a PCR with an event "
            "log; the verifier sends a fresh nonce, checks the quote and replays the log "
            "against the policy (attest: in overcast.yaml). Only admitted sites get peers; "
            "each gets its WireGuard private key sealed to its own TPM. A site that fails a "
            "later check is cut off at every peer and raises an alert."
        ),
        epilog=(
            "examples:\n"
            "  overcast attest policy overcast.yaml                      # known-good digests\n"
            "  overcast attest agent overcast.yaml --site cloud-a --tpm device:/dev/tpmrm0 \\\n"
            "      --listen 198.18.0.3:8890 --keys /etc/overcast/keys --site-config site.json\n"
            "  overcast attest enrol overcast.yaml --agent cloud-a=http://198.18.0.3:8890 --state /var/lib/overcast/attest\n"
            "  overcast attest verify overcast.yaml --agent cloud-a=http://198.18.0.3:8890 \\\n"
            "      --state /var/lib/overcast/attest --keys /etc/overcast/keys --metrics 127.0.0.1:9320\n"
            "  overcast attest status --state /var/lib/overcast/attest --json"
        ),
    )
    cmds = attest.add_subparsers(dest="attest_command", metavar="ATTEST_COMMAND", required=True)

    p = cmds.add_parser(
        "agent",
        help="run a site's attestation agent (at the site, next to its TPM)",
        description=(
            "Make the TPM's attestation key (once), measure the site (attest.measure and "
            "the rendered config) into the policy's PCR and answer the verifier over HTTP: "
            "identity, enrolment challenges, quotes, and the site's sealed WireGuard key, "
            "which is opened by the TPM and written to KEYDIR/SITE.key (0600) only."
        ),
        epilog=(
            "example:\n  overcast attest agent overcast.yaml --site cloud-a --tpm device:/dev/tpmrm0 "
            "--listen 198.18.0.3:8890 --keys /etc/overcast/keys --site-config site.json "
            "--state /var/lib/overcast/agent"
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument("--site", required=True, help="this site's name in CONFIG")
    p.add_argument(
        "--tpm",
        required=True,
        metavar="TCTI",
        help="the TPM: device:/dev/tpmrm0, or swtpm:path=DIR/tpm.sock for a software TPM",
    )
    p.add_argument(
        "--listen", type=listen_address, required=True, metavar="HOST:PORT", help="where to answer"
    )
    p.add_argument(
        "--keys", type=Path, required=True, metavar="KEYDIR", help="the site's key directory"
    )
    p.add_argument(
        "--site-config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the site's rendered config as Overcast wrote it (measured as 'config')",
    )
    p.add_argument(
        "--state", type=Path, required=True, metavar="DIR", help="where the event log is kept"
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="measure attest.measure's paths under this directory (default /)",
    )
    p.set_defaults(handler=_agent)

    p = cmds.add_parser(
        "enrol",
        help="register a site's TPM (EK and AK) with the enterprise, once",
        description=(
            "Ask each SITE's agent for its endorsement and attestation keys, check the AK is a "
            "restricted signing key fixed to its TPM, and prove it lives in the TPM that owns "
            "the EK (credential activation: MakeCredential here, ActivateCredential there). "
            "Exit 0 when every site is enrolled, 1 when any is refused (with the reason)."
        ),
        epilog=(
            "example:\n  overcast attest enrol overcast.yaml --agent cloud-a=http://198.18.0.3:8890 "
            "--state /var/lib/overcast/attest"
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument(
        "--agent", action="append", default=[], required=True, metavar="SITE=URL",
        help="a site's agent, http://HOST:PORT (repeat to enrol several sites)",
    )  # fmt: skip
    _state_flag(p)
    add_json_flag(p)
    p.set_defaults(handler=_enrol)

    p = cmds.add_parser(
        "verify",
        help="run the verifier: attest every site on the interval, gate the bridge",
        description=(
            "Every attest.interval_s, send each site a fresh nonce, check its quote and event "
            "log against the policy, and admit, keep or cut it off. A newly admitted site "
            "gets a new WireGuard key pair: the public key goes to the enterprise key "
            "directory, the private key sealed to the site's TPM. With --at, the running "
            "sites' data planes are converged to the admitted set at every change (only "
            "admitted sites are peers). Prints each state change; with --once, one round, "
            "exit 0 if every site is admitted, 3 if not."
        ),
        epilog=(
            "examples:\n  overcast attest verify overcast.yaml --agent cloud-a=http://198.18.0.3:8890 "
            "--state /var/lib/overcast/attest --keys /etc/overcast/keys --once\n"
            "  overcast attest verify overcast.yaml --agent cloud-a=http://198.18.0.3:8890 "
            "--state /var/lib/overcast/attest --keys /etc/overcast/keys "
            "--at cloud-a=oc-cloud-a:/etc/overcast/cloud-a --metrics 127.0.0.1:9320"
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument(
        "--agent", action="append", default=[], metavar="SITE=URL", required=True,
        help="a site's agent (repeat per site that must attest)",
    )  # fmt: skip
    _state_flag(p)
    p.add_argument(
        "--keys", type=Path, required=True, metavar="DIR", help="the enterprise key directory"
    )
    p.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="accepted digests (JSON from 'overcast attest policy --json'), added to attest.accept",
    )
    p.add_argument(
        "--at", action="append", default=[], metavar="SITE=NETNS:KEYDIR",
        help="a running site to keep converged: its namespace and own key directory",
    )  # fmt: skip
    p.add_argument(
        "--ovsdb", action="append", default=[], metavar="SITE=REMOTE",
        help="a site switch's OVSDB, so tunnels join and leave it (unix:PATH or tcp:HOST:PORT)",
    )  # fmt: skip
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="start of WireGuard interface names")
    p.add_argument("--once", action="store_true", help="one round, then exit")
    p.add_argument(
        "--metrics", type=listen_address, metavar="HOST:PORT", help="serve Prometheus metrics"
    )
    add_json_flag(p)
    p.set_defaults(handler=_verify)

    p = cmds.add_parser(
        "status",
        help="each site's attestation state and the reason",
        description=(
            "Read the verifier's state directory: per site its state (admitted, pending, "
            "refused, cut_off, unenrolled), since when, and why. Exit 0 if every site is "
            "admitted, 3 if any is not."
        ),
        epilog="example:\n  overcast attest status --state /var/lib/overcast/attest --json",
    )
    _state_flag(p)
    add_json_flag(p)
    p.set_defaults(handler=_status)

    p = cmds.add_parser(
        "policy",
        help="print the digests of what this machine runs, for attest.accept",
        description=(
            "Measure attest.measure's items on this machine (a known-good install) and print "
            "them as the attest.accept section, or as JSON for 'verify --policy'."
        ),
        epilog="example:\n  overcast attest policy overcast.yaml --json > policy.json",
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument(
        "--root", type=Path, default=Path("/"), help="measure paths under this directory"
    )
    add_json_flag(p)
    p.set_defaults(handler=_policy)


def _state_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", type=Path, required=True, metavar="DIR",
        help="the verifier's directory (enrolments, status.json, alerts.jsonl)",
    )  # fmt: skip


def _attest_section(config: OvercastConfig, path: str) -> Any:
    if config.attest is None:
        raise CommandError(
            f"{path} has no attest: section; add one (attest: {{}})", exitcodes.USAGE
        )
    return config.attest


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        site, sep, rest = value.partition("=")
        if not sep or not site or not rest:
            raise CommandError(f"{flag} {value!r}: write SITE=VALUE", exitcodes.USAGE)
        out[site] = rest
    return out


def _agent(args: argparse.Namespace) -> int:
    from attest.agent import Agent, serve
    from attest.measure import MeasureError
    from attest.tpm import Tpm, TpmError

    config = load_config(args.config)
    section = _attest_section(config, args.config)
    if args.site not in config.sites:
        raise CommandError(
            f"unknown site {args.site!r}; use one of: {', '.join(config.sites)}", exitcodes.USAGE
        )
    agent = Agent(
        site=args.site,
        tpm=Tpm(args.tpm),
        state_dir=args.state,
        keys_dir=args.keys,
        items=dict(section.measure),
        site_config=args.site_config,
        pcr=section.pcr,
        root=args.root,
    )
    try:
        agent.start()
    except (TpmError, MeasureError) as exc:
        raise CommandError(str(exc)) from None
    host, port = args.listen
    log.info("site %s: attestation agent on %s:%d", args.site, host, port)
    _stop_on_sigterm()
    try:
        serve(agent, host, port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return exitcodes.OK


def _stop_on_sigterm() -> None:
    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _enrol(args: argparse.Namespace) -> int:
    from attest.verifier import enrol
    from attest.verify import Refused, ak_name

    config = load_config(args.config)
    agents = _pairs(args.agent, "--agent")
    unknown = sorted(set(agents) - set(config.sites))
    if unknown:
        raise CommandError(f"--agent: unknown site(s) {', '.join(unknown)}", exitcodes.USAGE)
    results: dict[str, dict[str, Any]] = {}
    for site, url in agents.items():
        try:
            identity = enrol(site, url, args.state)
            results[site] = {"enrolled": True, "ak_name": ak_name(identity.ak_public).hex()}
        except Refused as exc:
            results[site] = {"enrolled": False, "reason": exc.reason}
    text = "\n".join(
        f"{s}: enrolled (AK name {r['ak_name']})"
        if r["enrolled"]
        else f"{s}: not enrolled: {r['reason']}"
        for s, r in results.items()
    )
    emit(results, args.json, text)
    return exitcodes.OK if all(r["enrolled"] for r in results.values()) else exitcodes.FAILURE


def _verify(args: argparse.Namespace) -> int:
    from attest.measure import config_digest
    from attest.verifier import Verifier, policies_for
    from bridge.keys import KeyStore

    config = load_config(args.config)
    section = _attest_section(config, args.config)
    agents = _pairs(args.agent, "--agent")
    unknown = sorted(set(agents) - set(config.sites))
    if unknown:
        raise CommandError(f"--agent: unknown site(s) {', '.join(unknown)}", exitcodes.USAGE)
    accept: dict[str, set[str]] = {n: set(section.accept.get(n, ())) for n in section.measure}
    if args.policy:
        for name, digests in _read_policy(args.policy).items():
            accept.setdefault(name, set()).update(digests)
    policies = policies_for(
        agents, section.pcr, accept, {s: config_digest(config, s) for s in agents}
    )
    keys = KeyStore(args.keys)
    gate = _gate(args, config, keys) if args.at else None
    verifier = Verifier(agents, policies, args.state, keys, gate)
    if args.metrics:
        from overcast import metrics

        metrics.serve(args.metrics[1], args.metrics[0])
    if args.once:
        status = verifier.run_once()
        return _show(status, args.json)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shown: dict[str, str] = {}
    try:
        while not stop.is_set():
            started = time.monotonic()
            for site, st in verifier.run_once().items():
                if shown.get(site) != st.state:
                    shown[site] = st.state
                    line = {"site": site, "state": st.state, "check": st.check, "reason": st.reason}
                    print(
                        json.dumps(line) if args.json else f"{site}: {st.state} ({st.reason})",
                        flush=True,
                    )
            stop.wait(max(0.0, section.interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    return exitcodes.OK


def _read_policy(path: Path) -> dict[str, list[str]]:
    from attest.config import _sha256_hex

    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return {str(n): [_sha256_hex(d) for d in ds] for n, ds in data.items()}
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(
            f"--policy {path}: {exc}; give the JSON that 'overcast attest policy --json' prints",
            exitcodes.USAGE,
        ) from None


def _gate(args: argparse.Namespace, config: OvercastConfig, keys: Any) -> Any:
    from bridge import admission
    from bridge.cli import RUN_ROOT
    from bridge.keylife import parse_deployed

    deployed = {}
    for value in args.at:
        try:
            site, where = parse_deployed(value, RUN_ROOT)
        except argparse.ArgumentTypeError as exc:
            raise CommandError(str(exc), exitcodes.USAGE) from None
        deployed[site] = where
    ovsdb = _pairs(args.ovsdb, "--ovsdb")

    def gate(admitted: frozenset[str]) -> None:
        changes = admission.converge(
            config, keys, deployed, admitted, prefix=args.prefix, ovsdb=ovsdb
        )
        log.info(
            "bridge: admitted %s; %d change(s)", ", ".join(sorted(admitted)) or "none", len(changes)
        )

    return gate


def _status(args: argparse.Namespace) -> int:
    from attest.verifier import load_status

    status = load_status(args.state)
    if not status:
        raise CommandError(
            f"no verifier state in {args.state}; run 'overcast attest verify' with --state {args.state}",
            exitcodes.FAILURE,
        )
    return _show(status, args.json)


def _show(status: dict[str, Any], as_json: bool) -> int:
    from dataclasses import asdict

    lines = [f"{'site':<10} {'state':<10} {'since':<20} reason"]
    for site, st in status.items():
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.since)) if st.since else "-"
        lines.append(f"{site:<10} {st.state:<10} {since:<20} {st.reason}")
    emit({s: asdict(st) for s, st in status.items()}, as_json, "\n".join(lines))
    return (
        exitcodes.OK if all(st.state == "admitted" for st in status.values()) else exitcodes.ALERT
    )


def _policy(args: argparse.Namespace) -> int:
    from attest.measure import MeasureError, measure

    config = load_config(args.config)
    section = _attest_section(config, args.config)
    try:
        digests = measure(dict(section.measure), args.root)
    except MeasureError as exc:
        raise CommandError(str(exc)) from None
    text = "attest:\n  accept:\n" + "\n".join(f"    {n}: [{d}]" for n, d in digests.items())
    emit({n: [d] for n, d in digests.items()}, args.json, text)
    return exitcodes.OK
