"""Logging set-up shared by every part: human text on a terminal, JSON lines for machines.

Commands that run until stopped (daemons: `bridge watch`, `controller run`, ...) put an ISO
8601 UTC timestamp with milliseconds before every human line, as OVS does in its own logs,
so an engineer can line a failover in one log up with the switch's and the peer's. The
one-shot commands keep short lines: their output is read as it appears.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})))
TEXT = "%(levelname)s %(name)s: %(message)s"


def timestamp(record: logging.LogRecord) -> str:
    """When `record` was made, as ISO 8601 UTC with milliseconds: 2026-12-06T12:46:47.333Z."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TimestampedFormatter(logging.Formatter):
    """TEXT after the record's ISO 8601 UTC timestamp."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        return f"{timestamp(record)} {super().format(record)}"


def setup(verbosity: int = 0, json_lines: bool = False, timestamps: bool = False) -> None:
    """Configure the root logger once, on stderr (stdout is for command output); with
    `timestamps` (a command that runs until stopped), every human line starts with its time."""
    level = logging.WARNING - 10 * verbosity
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    elif timestamps:
        handler.setFormatter(TimestampedFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.DEBUG))
