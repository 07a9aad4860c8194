"""Where alert events go: each sink takes the event dicts `Guard.process` returns.

- `jsonl.JsonLines`: one JSON object per line on a stream (stdout or a file).
- `text.Text`: one human line per event.
- `syslog.Syslog`: RFC 5424 messages to a syslog daemon over UDP or a Unix socket.
"""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...
