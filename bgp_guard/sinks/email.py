"""Email over SMTP submission (RFC 6409) with STARTTLS (RFC 3207): one mail per notice.

The server's certificate is verified (against `ca_file`, else the system's CAs) before a
login or a message is sent. Every notice of one event carries the same References header,
so a mail client threads an event's open, repeats, ack and close together.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from bgp_guard.sinks import notice as notices
from bgp_guard.sinks.outbox import SinkError


def message(notice: dict[str, Any], sender: str, to: tuple[str, ...]) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = f"[overcast guard] {notice['headline']}"
    mail["Date"] = formatdate(notice["time"])
    mail["Message-ID"] = make_msgid("overcast-guard")
    thread = hashlib.sha256(notice["key"].encode()).hexdigest()[:24]
    mail["References"] = f"<event-{thread}@overcast-guard>"
    mail["X-Overcast-Notice"] = notice["notice"]
    mail.set_content(notices.text(notice))
    return mail


class EmailSink:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        to: tuple[str, ...],
        starttls: bool = True,
        ca_file: str | None = None,
        login: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.starttls = starttls
        self.tls = ssl.create_default_context(cafile=ca_file) if starttls else None
        self.login = login
        self.timeout = timeout

    def _send(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.tls is not None:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise SinkError(
                        f"{self.host}:{self.port} offers no STARTTLS; fix the server or set "
                        "starttls: false (no login then)"
                    )
                smtp.starttls(context=self.tls)
            if self.login is not None:
                smtp.login(*self.login)
            smtp.send_message(mail)

    async def send(self, notice: dict[str, Any]) -> None:
        mail = message(notice, self.sender, self.to)
        try:
            await asyncio.to_thread(self._send, mail)
        except smtplib.SMTPException as exc:
            raise SinkError(f"SMTP {self.host}:{self.port}: {exc}") from None
        except ssl.SSLError as exc:
            raise SinkError(f"TLS with {self.host}:{self.port}: {exc.reason or exc}") from None

    async def close(self) -> None:
        return None
