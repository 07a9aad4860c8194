from __future__ import annotations

import io
import json
import socket

from bgp_guard.engine import Guard
from bgp_guard.sinks.jsonl import JsonLines
from bgp_guard.sinks.syslog import Syslog
from bgp_guard.sinks.text import Text

from .helpers import guard_config, update


def one_event() -> dict[str, object]:
    guard = Guard(guard_config({"prefixes": {"192.0.2.0/24": {"origins": [64500]}}}))
    (event,) = guard.process(update({"t": 1e9, "prefix": "192.0.2.0/24", "path": [1, 65066]}))
    return event


def test_json_lines_and_text() -> None:
    event = one_event()
    stream = io.StringIO()
    JsonLines(stream).write(event)
    assert json.loads(stream.getvalue()) == event
    stream = io.StringIO()
    Text(stream).write(event)
    assert stream.getvalue() == (
        "2001-09-09 01:46:40 ONGOING   exact-origin E|0|-|- [1 peer(s)] AS65066 originates "
        "192.0.2.0/24 which only AS64500 may originate.\n"
    )


def test_syslog_rfc5424_over_loopback_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        sink = Syslog(f"127.0.0.1:{server.getsockname()[1]}")
        try:
            sink.write(one_event())
            data = server.recv(65535)
        finally:
            sink.close()
    header, _, msg = data.partition(b"\xef\xbb\xbf")
    assert header.startswith(b"<132>1 ")  # local0.warning
    assert header.endswith(b" overcast-guard - exact-origin - ")
    text = msg.decode()
    assert text.startswith("AS65066 originates 192.0.2.0/24")
    assert json.loads(text[text.index("{") :])["offending_as"] == 65066


def test_syslog_bad_address() -> None:
    try:
        Syslog("nowhere")
    except ValueError as exc:
        assert "host:port" in str(exc)
    else:
        raise AssertionError("expected ValueError")
