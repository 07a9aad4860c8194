"""Each notice sink against a real receiver on loopback: rsyslog (RFC 5424 over UDP, and
over TCP with RFC 6587 octet counting), aiosmtpd with STARTTLS and a login, and an HTTP
server for the four webhook templates. An event's open and close go through the real
Notifier and Outbox, queued in a real state file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.engine import Guard
from bgp_guard.notify import Notifier
from bgp_guard.sinks.config import Notify, Retry
from bgp_guard.sinks.email import EmailSink
from bgp_guard.sinks.jsonl import JsonLinesFile
from bgp_guard.sinks.outbox import Outbox, Transport
from bgp_guard.sinks.syslog import SyslogSink
from bgp_guard.sinks.webhook import Webhook
from bgp_guard.state import Store
from tests.conftest import require_binaries
from tests.integration.bgp_guard.sinkparts import (
    free_port,
    receiver,
    records,
    rsyslog,
    tls_certificate,
)
from tests.unit.bgp_guard.helpers import guard_config, update

pytestmark = pytest.mark.timeout(120)

FAST = Retry(min=0.05, max=0.2, timeout=5)
HIJACK = "203.0.113.0/25"


def transitions() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The engine's open (ongoing) and close (withdrawn) of one sub-prefix hijack."""
    guard = Guard(guard_config({"prefixes": {"203.0.113.0/24": {"origins": [64500]}}}))
    opened = guard.process(update({"t": 100, "prefix": HIJACK, "path": [64510, 64511]}))
    closed = guard.process(update({"t": 160, "prefix": HIJACK, "withdraw": True}))
    return opened, closed


async def until(condition: Callable[[], Any], timeout: float = 20) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        assert loop.time() < deadline, f"timed out waiting for {condition}"
        await asyncio.sleep(0.05)
    return value


class Running:
    """A Notifier and an Outbox over a state file, delivering in the background."""

    def __init__(self, path: Path, transports: dict[str, Transport]) -> None:
        self.store = Store(path)
        self.outbox = Outbox(self.store, transports, dict.fromkeys(transports, FAST), poll=0.1)
        self.notifier = Notifier(
            self.store, list(transports), Notify(repeat_every=0), 0.0, self.outbox.wake
        )
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(self.outbox.run(self.stop))

    def depth(self, sink: str) -> int:
        return self.outbox.depths()[sink]

    async def close(self) -> None:
        self.stop.set()
        await self.task
        self.store.close()


def test_syslog_over_udp_and_tcp_reaches_rsyslog(tmp_path: Path) -> None:
    """Open and close over both transports; rsyslog restarts between them, and the TCP
    sink notices the closed connection and reconnects by itself."""
    require_binaries("rsyslogd")
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    opened, closed = transitions()

    async def scenario(stack: contextlib.ExitStack, first: Path) -> Path:
        sinks: dict[str, Transport] = {
            "udp": SyslogSink(f"127.0.0.1:{udp}", "udp"),
            "tcp": SyslogSink(f"127.0.0.1:{tcp}", "tcp"),
        }
        run = Running(tmp_path / "state.sqlite", sinks)
        run.notifier.handle(opened, 100)
        await until(lambda: len(records(first)) == 2)
        stack.close()  # rsyslog stops; a new one starts on the same ports
        second = stack.enter_context(rsyslog(tmp_path, udp, tcp, name="second"))
        run.notifier.handle(closed, 160)
        await until(lambda: len(records(second)) == 2)
        await run.close()
        return second

    with contextlib.ExitStack() as stack:
        first = stack.enter_context(rsyslog(tmp_path, udp, tcp, name="first"))
        second = asyncio.run(scenario(stack, first))
    got = records(first) + records(second)
    assert [(r["msgid"], r["app"]) for r in got] == [("subprefix-origin", "overcast-guard")] * 4
    sd = [r["sd"] for r in got]
    assert (
        sorted(sd[:2])
        == [f'[overcast@32473 notice="open" key="subprefix-origin|{HIJACK}|64511|203.0.113.0/24"]']
        * 2
    )
    assert all('notice="close"' in x for x in sd[2:]), sd
    assert [r["severity"] for r in got] == ["4", "4", "6", "6"]
    assert (
        got[0]["msg"].lstrip("\ufeff").startswith(f"OPEN: subprefix-origin {HIJACK} from AS64511")
    )
    assert "WITHDRAWN" in got[2]["msg"]


def test_email_with_starttls_and_login_reaches_aiosmtpd(tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path)
    port = free_port()
    out = tmp_path / "mail.jsonl"
    opened, closed = transitions()

    async def scenario() -> None:
        sink = EmailSink(
            "127.0.0.1", port, "guard@example.net", ("noc@example.net",), True, str(cert),
            ("guard", "s3cret"),
        )  # fmt: skip
        run = Running(tmp_path / "state.sqlite", {"mail": sink})
        run.notifier.handle(opened, 100)
        run.notifier.handle(closed, 160)
        await until(lambda: len(records(out)) == 2)
        await run.close()

    with receiver("smtp", str(port), str(out), str(cert), str(key), "guard", "s3cret"):
        asyncio.run(scenario())
    opened_mail, closed_mail = records(out)
    assert opened_mail["tls"] and closed_mail["tls"]
    assert opened_mail["to"] == ["noc@example.net"]
    assert (opened_mail["notice"], closed_mail["notice"]) == ("open", "close")
    assert opened_mail["subject"] == (
        f"[overcast guard] OPEN: subprefix-origin {HIJACK} from AS64511 (about 203.0.113.0/24)"
    )
    assert closed_mail["subject"].startswith("[overcast guard] WITHDRAWN: subprefix-origin")
    assert opened_mail["references"] == closed_mail["references"]  # one thread per event
    assert "example AS path: 64510 64511" in opened_mail["body"]


def test_email_refuses_a_server_it_cannot_verify(tmp_path: Path) -> None:
    """Without the test CA the certificate is not trusted: nothing is sent, the notice
    stays queued and the failure says why."""
    cert, key = tls_certificate(tmp_path)
    port = free_port()
    out = tmp_path / "mail.jsonl"
    opened, _ = transitions()

    async def scenario() -> str:
        sink = EmailSink("127.0.0.1", port, "guard@example.net", ("noc@example.net",))
        run = Running(tmp_path / "state.sqlite", {"mail": sink})
        run.notifier.handle(opened, 100)
        await until(lambda: run.store.deliveries()[0]["last_error"])
        error = str(run.store.deliveries()[0]["last_error"])
        assert run.depth("mail") == 1
        await run.close()
        return error

    with receiver("smtp", str(port), str(out), str(cert), str(key), "guard", "s3cret"):
        error = asyncio.run(scenario())
    assert "CERTIFICATE_VERIFY_FAILED" in error, error
    assert records(out) == []


def test_webhook_templates_reach_an_http_receiver_through_failures(tmp_path: Path) -> None:
    """The receiver answers 503 three times first: retried with backoff, then every
    template's open and close arrive, in order, as valid JSON of the right shape."""
    port = free_port()
    out = tmp_path / "hooks.jsonl"
    opened, closed = transitions()
    names = ("slack", "teams", "mattermost", "generic")

    async def scenario() -> None:
        sinks: dict[str, Transport] = {
            name: Webhook(f"http://127.0.0.1:{port}/{name}", name) for name in names
        }
        run = Running(tmp_path / "state.sqlite", sinks)
        run.notifier.handle(opened, 100)
        run.notifier.handle(closed, 160)
        await until(lambda: len(records(out)) == 8)
        await run.close()

    with receiver("http", str(port), str(out), "--fail", "3"):
        asyncio.run(scenario())
    got: dict[str, list[Any]] = {}
    for record in records(out):
        got.setdefault(record["path"].strip("/"), []).append(record["body"])
    slack, teams, mattermost, generic = (got[n] for n in names)
    assert [m["text"].split(":")[0] for m in slack] == ["OPEN", "WITHDRAWN"]
    assert slack[0]["attachments"][0]["color"] == "#d00000"
    card = teams[0]["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert {f["title"] for f in card["body"][2]["facts"]} >= {"Prefix", "Offending AS", "Key"}
    assert mattermost[1]["attachments"][0]["color"] == "#2eb886"
    assert [g["notice"] for g in generic] == ["open", "close"]
    assert generic[0]["event"]["prefix"] == HIJACK


def test_a_down_sink_blocks_nothing_and_gets_its_queue_after_a_restart(tmp_path: Path) -> None:
    """The webhook receiver is down: the file sink has the open at once, the webhook's
    open waits in the state file, survives a restart of the delivery side, and arrives
    (before the close) once the receiver is up."""
    port = free_port()
    hooks, lines = tmp_path / "hooks.jsonl", tmp_path / "guard.jsonl"
    opened, closed = transitions()

    def sinks() -> dict[str, Transport]:
        return {
            "file": JsonLinesFile(str(lines)),
            "hook": Webhook(f"http://127.0.0.1:{port}/generic"),
        }

    async def before_restart() -> None:
        run = Running(tmp_path / "state.sqlite", sinks())
        run.notifier.handle(opened, 100)
        await until(lambda: records(lines))
        await until(lambda: run.store.deliveries()[1]["attempts"] >= 2)  # retrying
        await run.close()

    asyncio.run(before_restart())
    assert [r["notice"] for r in records(lines)] == ["open"]

    async def after_restart() -> None:
        run = Running(tmp_path / "state.sqlite", sinks())
        assert run.depth("hook") == 1
        await asyncio.sleep(0.3)  # still down
        run.notifier.handle(opened, 200)  # the engine re-learns it: no second open
        assert run.depth("hook") == 1
        with receiver("http", str(port), str(hooks)):
            await until(lambda: len(records(hooks)) == 1)
            run.notifier.handle(closed, 260)
            await until(lambda: len(records(hooks)) == 2)
        await run.close()

    asyncio.run(after_restart())
    assert [r["body"]["notice"] for r in records(hooks)] == ["open", "close"]
    assert [r["notice"] for r in records(lines)] == ["open", "close"]
    assert json.loads(json.dumps(records(hooks)[0]["body"]["event"]))["prefix"] == HIJACK
