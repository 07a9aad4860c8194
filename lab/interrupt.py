"""Ctrl-C while a lab is being built or used removes the lab: a half-built lab is worth
nothing and is easy to forget. A second Ctrl-C during the removal is ignored, so it cannot
leave the lab half-removed (the removal takes seconds; SIGTERM still stops it, and
`overcast lab down` finishes the job from the lab's registry)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from lab import build


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def removed_on_interrupt(state_dir: Path, progress: build.Progress = _quiet) -> Iterator[None]:
    """Run the body; on KeyboardInterrupt remove the lab at `state_dir`, then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        progress(f"lab {state_dir.name}: interrupted, removing everything it built")
        with sigint_ignored():
            build.down(state_dir, progress)
        raise
