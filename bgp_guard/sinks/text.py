"""One line per event for a person: when, state, type, prefix, and the rationale."""

from __future__ import annotations

import time
from typing import IO, Any

from bgp_guard.communities import parse, text


def render(event: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["time"]))
    code = f" {event['artemis']}" if event["artemis"] else ""
    tags = [*event.get("communities", ()), *event.get("large_communities", ())]
    named = [text(parse(t)) for t in tags]
    return (
        f"{when} {event['state'].upper():<9} {event['type']}{code} "
        f"[{event['peer_count']} peer(s)] {event['rationale']}"
        + (f" Communities: {' '.join(named)}." if named else "")
    )


class Text:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, event: dict[str, Any]) -> None:
        self.stream.write(render(event) + "\n")
        self.stream.flush()
