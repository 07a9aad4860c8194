"""Real receivers for the sink tests, run as their own processes so that a test can start
one inside a namespace, stop it (a sink that is down) and start it again:

    python -m tests.integration.bgp_guard.receivers http PORT OUT [--fail N]
    python -m tests.integration.bgp_guard.receivers smtp PORT OUT CERT KEY USER PASSWORD

Each appends what it received to OUT as JSON lines and prints "ready" once listening on
127.0.0.1. The HTTP receiver answers 503 to its first N requests (a webhook that fails),
then 200. The SMTP server is aiosmtpd, offering STARTTLS and requiring it before AUTH and
before any mail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


def _append(out: str, record: dict[str, Any]) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")


async def http(port: int, out: str, fail: int) -> None:
    failing = [fail]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if failing[0] > 0:
            failing[0] -= 1
            return web.Response(status=503, text="try later")
        _append(out, {"path": request.path, "received": time.time(), "body": json.loads(body)})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


class Mailbox:
    def __init__(self, out: str) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        mail = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
        _append(
            self.out,
            {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": mail["Subject"],
                "notice": mail["X-Overcast-Notice"],
                "references": mail["References"],
                "tls": session.ssl is not None,
                "body": mail.get_content(),
            },
        )
        return "250 OK"


def smtp(port: int, out: str, cert: str, key: str, user: str, password: str) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def check(
        server: Any, session: Session, envelope: Envelope, mechanism: str, auth: Any
    ) -> AuthResult:
        ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok)

    controller = Controller(
        Mailbox(out), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
        authenticator=check, auth_require_tls=True, auth_required=True,
    )  # fmt: skip
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("http")
    p.add_argument("port", type=int)
    p.add_argument("out")
    p.add_argument("--fail", type=int, default=0)
    p = sub.add_parser("smtp")
    for name in ("port", "out", "cert", "key", "user", "password"):
        p.add_argument(name, type=int if name == "port" else str)
    args = parser.parse_args()
    if args.kind == "http":
        asyncio.run(http(args.port, args.out, args.fail))
    else:
        smtp(args.port, args.out, args.cert, args.key, args.user, args.password)


if __name__ == "__main__":
    main()
