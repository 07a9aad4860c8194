"""JSON lines: one object per line, flushed at once so a tailing reader sees it now.

`JsonLines` prints the engine's transitions on a stream (the console of `guard replay` and
`guard watch --json`); `JsonLinesFile` is the notice sink, to a file it rotates itself.

Rotation is by size: guard.jsonl becomes guard.jsonl.1 (and .1 becomes .2, up to `keep`)
before a line would take it past max_bytes, so a line is never split between two files.
Each line is one write(2) on an O_APPEND descriptor, fsynced before the notice counts as
delivered. If logrotate (or a person) moved the file away, the next line goes to a new file
at the configured path, as logging.WatchedFileHandler does.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any


class JsonLines:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, sort_keys=True) + "\n")
        self.stream.flush()


class JsonLinesFile:
    def __init__(self, path: str, max_bytes: int = 10 * 2**20, keep: int = 5) -> None:
        """`path` "-" is standard output (never rotated)."""
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def _open(self) -> int:
        if self.path == "-":
            return sys.stdout.fileno()
        if self._fd is not None and self._inode != _inode(self.path):
            os.close(self._fd)  # moved away by logrotate: start a new file
            self._fd = None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            st = os.fstat(self._fd)
            self._inode = (st.st_dev, st.st_ino)
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.keep == 0:
            os.unlink(self.path)
            return
        for n in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")

    async def send(self, notice: dict[str, Any]) -> None:
        line = (json.dumps(notice, sort_keys=True) + "\n").encode()
        fd = self._open()
        if self.path != "-":
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.max_bytes:
                self._rotate()
                fd = self._open()
        os.write(fd, line)
        if self.path != "-":
            os.fsync(fd)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
