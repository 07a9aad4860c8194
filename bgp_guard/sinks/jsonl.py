"""JSON lines: one event per line, flushed at once so a tailing reader sees it now."""

from __future__ import annotations

import json
from typing import IO, Any


class JsonLines:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, sort_keys=True) + "\n")
        self.stream.flush()
