"""Syslog (RFC 5424) over UDP (RFC 5426) or a local Unix datagram socket: the rationale as
the message, the event as structured JSON after it, so both a person and a SIEM can read it."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import time
from typing import Any

FACILITY_LOCAL0 = 16  # RFC 5424 section 6.2.1, table 1
SEVERITY = {"ongoing": 4, "withdrawn": 5, "resolved": 6}  # warning, notice, informational

log = logging.getLogger(__name__)


def format_message(event: dict[str, Any], hostname: str, now: float) -> bytes:
    """RFC 5424 section 6: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG."""
    pri = FACILITY_LOCAL0 * 8 + SEVERITY.get(event["state"], 4)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    msg = f"{event['rationale']} {json.dumps(event, sort_keys=True)}"
    # MSGID is the event type (1*32 printable ASCII); BOM marks the UTF-8 MSG (section 6.4).
    header = f"<{pri}>1 {stamp} {hostname} overcast-guard - {event['type'][:32]} -"
    return header.encode("ascii") + b" \xef\xbb\xbf" + msg.encode("utf-8")


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
