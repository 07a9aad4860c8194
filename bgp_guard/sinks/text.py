"""One line per event for a person: when, state, type, prefix, and the rationale."""

from __future__ import annotations

import time
from typing import IO, Any


def render(event: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["time"]))
    code = f" {event['artemis']}" if event["artemis"] else ""
    return (
        f"{when} {event['state'].upper():<9} {event['type']}{code} "
        f"[{event['peer_count']} peer(s)] {event['rationale']}"
    )


class Text:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, event: dict[str, Any]) -> None:
        self.stream.write(render(event) + "\n")
        self.stream.flush()
