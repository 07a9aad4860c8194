"""Syslog (RFC 5424): the words as the message, the event as JSON after it, so both a
person and a SIEM can read it.

`Syslog` prints the engine's transitions over UDP (RFC 5426) or a local Unix socket (the
`--syslog` flag). `SyslogSink` is the notice sink, over UDP or over TCP with RFC 6587
octet-counting framing ("LEN SP MSG", section 3.4.1): unlike LF-terminated framing, a
message may hold any byte. Over UDP "delivered" means sent, nothing more (RFC 5426 has no
acknowledgement); over TCP it means the kernel took it on a connection that the receiver
had not closed, which is as much as plain syslog over TCP can say (RFC 6587 section 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from typing import Any

FACILITY_LOCAL0 = 16  # RFC 5424 section 6.2.1, table 1
SEVERITY = {"ongoing": 4, "withdrawn": 5, "resolved": 6}  # warning, notice, informational
NOTICE_SEVERITY = {"open": 4, "repeat": 4, "close": 6, "ack": 5, "silence": 5}
# Structured-data ID: 32473 is the enterprise number reserved for examples (RFC 5612).
SD_ID = "overcast@32473"

log = logging.getLogger(__name__)


def _message(severity: int, msgid: str, hostname: str, now: float, sd: str, msg: str) -> bytes:
    """RFC 5424 section 6: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG."""
    pri = FACILITY_LOCAL0 * 8 + severity
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    # MSGID is 1*32 printable ASCII; the BOM marks the MSG as UTF-8 (section 6.4).
    header = f"<{pri}>1 {stamp} {hostname} overcast-guard - {msgid[:32]} {sd}"
    return header.encode("ascii") + b" \xef\xbb\xbf" + msg.encode("utf-8")


def format_message(event: dict[str, Any], hostname: str, now: float) -> bytes:
    msg = f"{event['rationale']} {json.dumps(event, sort_keys=True)}"
    return _message(SEVERITY.get(event["state"], 4), event["type"], hostname, now, "-", msg)


def _sd_value(text: str) -> str:
    """PARAM-VALUE escapes '"', '\\' and ']' (RFC 5424 section 6.3.3)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_notice(notice: dict[str, Any], hostname: str, now: float) -> bytes:
    """The notice: kind and key as structured data, so a SIEM can pair an open with its
    close; then the headline, the rationale and the notice as JSON."""
    event = notice["event"]
    sd = f'[{SD_ID} notice="{notice["notice"]}" key="{_sd_value(notice["key"])}"]'
    msg = f"{notice['headline']}: {event['rationale']} {json.dumps(notice, sort_keys=True)}"
    severity = NOTICE_SEVERITY.get(notice["notice"], 5)
    return _message(severity, event["type"], hostname, now, sd, msg)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class SyslogSink:
    def __init__(self, address: str, transport: str = "udp") -> None:
        self.host, self.port = _host_port(address)
        self.transport = transport
        self.hostname = socket.gethostname() or "-"
        self._udp: socket.socket | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, notice: dict[str, Any]) -> None:
        message = format_notice(notice, self.hostname, time.time())
        if self.transport == "udp":
            if self._udp is None:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                self._udp = socket.socket(family, socket.SOCK_DGRAM)
                self._udp.connect((self.host, self.port))  # so ICMP unreachable is reported
            self._udp.send(message)
            return
        if self._stream is not None and self._stream[0].at_eof():
            await self.close()  # the receiver closed it (restarted): open a new one
        if self._stream is None:
            self._stream = await asyncio.open_connection(self.host, self.port)
        writer = self._stream[1]
        try:
            writer.write(b"%d " % len(message) + message)  # RFC 6587 section 3.4.1
            await writer.drain()
        except OSError:
            await self.close()
            raise

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Syslog:
    def __init__(self, address: str) -> None:
        """`address`: "host:port" for UDP, or the path of a Unix socket (e.g. /dev/log)."""
        self.hostname = socket.gethostname() or "-"
        if address.startswith("/"):
            try:
                is_socket = stat.S_ISSOCK(os.stat(address).st_mode)
            except OSError:
                is_socket = False
            if not is_socket:
                raise ValueError(
                    f"no socket at {address}; is the syslog daemon running? "
                    "(e.g. /dev/log, or host:port for UDP)"
                )
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.target: Any = address
        else:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"syslog address {address!r} is neither host:port nor a socket path; "
                    "use e.g. 127.0.0.1:514 or /dev/log"
                )
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.target = (host, int(port))

    def write(self, event: dict[str, Any]) -> None:
        # A syslog daemon that restarts must not stop the guard: the event still reaches the
        # other sinks, and the failure is logged.
        try:
            self.sock.sendto(format_message(event, self.hostname, time.time()), self.target)
        except OSError as exc:
            log.warning("syslog %s: event not sent: %s", self.target, exc.strerror or exc)

    def close(self) -> None:
        self.sock.close()
