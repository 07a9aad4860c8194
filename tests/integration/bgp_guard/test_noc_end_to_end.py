"""The NOC bar, end to end: a hijack announced by a real gobgpd over a live BGP session
reaches all four sinks (a JSON-lines file, rsyslog over TCP, aiosmtpd with STARTTLS, a
webhook) as "open"; `guard watch` restarts in between and neither loses nor repeats it;
the webhook receiver, down for the open, gets it once it is up; the withdrawal reaches all
four as "close". Everything runs in the test's own namespace."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import (
    GOBGP_ASN,
    daemon,
    gobgpd,
    gobgpd_neighbour,
    ns_run,
)
from tests.integration.bgp_guard.sinkparts import (
    REPO,
    receiver,
    records,
    rsyslog,
    tls_certificate,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

US, THEM = "192.0.2.10", "192.0.2.1"
HIJACK = "203.0.113.0/25"
SYSLOG_UDP, SYSLOG_TCP, SMTP, HTTP = 5514, 5514, 2525, 8080  # the namespace's own loopback

CONFIG = f"""
sites: {{}}
guard:
  prefixes:
    203.0.113.0/24: {{origins: [64500]}}
  notify: {{repeat_every: 0}}
  sinks:
    file: {{type: jsonl, path: guard.jsonl}}
    syslog: {{type: syslog, address: "127.0.0.1:{SYSLOG_TCP}", transport: tcp}}
    mail:
      type: email
      host: 127.0.0.1
      port: {SMTP}
      ca_file: smtp-cert.pem
      username: guard
      password_file: smtp.password
      sender: guard@example.net
      to: [noc@example.net]
    hook:
      type: webhook
      url: http://127.0.0.1:{HTTP}/hooks/generic
      retry: {{min: 0.1, max: 0.5}}
  feeds:
    bgp:
      local_asn: 65010
      router_id: {US}
      neighbours: {{{THEM}: {GOBGP_ASN}}}
      connect: [{THEM}]
      local_address: {US}
      hold_time: 9
"""


@contextlib.contextmanager
def guard_watch(netns: str, config: Path, *flags: str) -> Iterator[subprocess.Popen[str]]:
    """`overcast guard watch` in `netns`; stopped with SIGINT, as by an operator."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "overcast", "guard", "watch",
         "--config", str(config), *flags],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        assert "Traceback" not in stderr, stderr


def notices(path: Path) -> list[tuple[str, str]]:
    return [(r["notice"], r["key"]) for r in records(path)]


def queued(state: Path, sink: str) -> int:
    with contextlib.closing(sqlite3.connect(state)) as db:
        (n,) = db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE sink = ? AND delivered_at IS NULL", (sink,)
        ).fetchone()
    return int(n)


# The stored-events gauge follows the state file once a second.
STORED = 'overcast_bgp_guard_stored_events{state="withdrawn",type="subprefix-origin"} 1.0'


def scrape(netns: str, want: str) -> str:
    """guard watch's /metrics page, if it has `want` yet, else ""."""
    get = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9179/metrics').read().decode())"
    page = ns_run(netns, sys.executable, "-c", get)
    return page if want in page else ""


def changed_at(state: Path) -> float:
    """When the engine last reported the (one) event: the dedup writes it, no notice."""
    with contextlib.closing(sqlite3.connect(state)) as db:
        (when,) = db.execute("SELECT MAX(changed_at) FROM events").fetchone()
    return float(when or 0)


def established(netns: str, gobgp: list[str]) -> bool:
    return "established" in ns_run(netns, *gobgp, "neighbor", US).lower()


def test_a_hijack_reaches_every_sink_once_as_open_and_once_as_close(
    netns: str, tmp_path: Path
) -> None:
    require_binaries("gobgpd", "gobgp", "rsyslogd")
    cert, cert_key = tls_certificate(tmp_path)
    password = tmp_path / "smtp.password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    state, lines = tmp_path / "guard-state.sqlite", tmp_path / "guard.jsonl"
    mail, hooks = tmp_path / "mail.jsonl", tmp_path / "hooks.jsonl"
    argv, gobgp = gobgpd(
        tmp_path, THEM, gobgpd_neighbour(THEM, US, 65010, families=("ipv4-unicast",))
    )
    with contextlib.ExitStack() as stack:
        syslog = stack.enter_context(rsyslog(tmp_path, SYSLOG_UDP, SYSLOG_TCP, netns=netns))
        smtp = (str(SMTP), str(mail), str(cert), str(cert_key), "guard", "s3cret")
        stack.enter_context(receiver("smtp", *smtp, netns=netns))
        stack.enter_context(daemon(netns, argv, tmp_path / "gobgpd.log"))
        ns_run(netns, *gobgp, "global", attempts_until=20)

        with guard_watch(netns, config):
            wait_for(lambda: established(netns, gobgp), 30, "the BGP session")
            ns_run(netns, *gobgp, "global", "rib", "add", HIJACK)
            for path in (lines, mail, syslog):
                wait_for(lambda p=path: records(p), 30, f"the open in {path.name}")  # type: ignore[misc]
            wait_for(lambda: queued(state, "hook") == 1, 30, "the webhook's open to be queued")
        # Restarted: gobgpd sends the route again, the engine says "ongoing" again.
        restarted = time.time()
        with guard_watch(netns, config, "--metrics-port", "9179"):
            wait_for(lambda: changed_at(state) > restarted, 30, "the route to be judged again")
            assert queued(state, "hook") == 1
            with receiver("http", str(HTTP), str(hooks), netns=netns):
                wait_for(lambda: records(hooks), 30, "the webhook's open after it came up")
                ns_run(netns, *gobgp, "global", "rib", "del", HIJACK)
                wait_for(lambda: len(records(hooks)) == 2, 30, "the webhook's close")
                for path in (lines, mail, syslog):
                    wait_for(lambda p=path: len(records(p)) == 2, 30, f"the close in {path.name}")  # type: ignore[misc]
                metrics = wait_for(lambda: scrape(netns, STORED), 10, "the stored-events gauge")
    key = f"subprefix-origin|{HIJACK}|{GOBGP_ASN}|203.0.113.0/24"
    assert notices(lines) == [("open", key), ("close", key)]
    assert [(r["notice"], r["subject"].split(":")[0], key in r["body"]) for r in records(mail)] == [
        ("open", "[overcast guard] OPEN", True),
        ("close", "[overcast guard] WITHDRAWN", True),
    ]
    assert [r["sd"] for r in records(syslog)] == [
        f'[overcast@32473 notice="{n}" key="{key}"]' for n in ("open", "close")
    ]
    bodies: list[dict[str, Any]] = [r["body"] for r in records(hooks)]
    assert [(b["notice"], b["key"]) for b in bodies] == [("open", key), ("close", key)]
    assert bodies[0]["event"]["offending_as"] == GOBGP_ASN
    assert queued(state, "hook") == queued(state, "mail") == 0
    # The restarted guard delivered the webhook's queued open and every sink's close.
    for line in (
        'overcast_bgp_guard_sink_deliveries_total{notice="open",sink="hook"} 1.0',
        'overcast_bgp_guard_sink_deliveries_total{notice="close",sink="mail"} 1.0',
        'overcast_bgp_guard_sink_queue_depth{sink="hook"} 0.0',
        "overcast_bgp_guard_processing_lag_seconds_count 2.0",  # ongoing again, withdrawn
    ):
        assert line in metrics, metrics
    assert 'overcast_bgp_guard_sink_failures_total{sink="hook"}' in metrics
