"""Ctrl-C while a lab is being built or used removes the lab: a half-built lab is worth
nothing and is easy to forget. A second Ctrl-C during the removal is ignored, so it cannot
leave the lab half-removed (the removal takes seconds; SIGTERM still stops it, and
`overcast lab down` finishes the job from the lab's registry)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from lab import build


def _quiet(_: str) -> None:
    pass


RESEND_AFTER = 0.05  # seconds: a callback's rest is far shorter


def redeliver_lost_interrupts() -> None:
    """Make a Ctrl-C that Python would drop stop the build after all. Python runs its
    SIGINT handler between bytecodes, so it can land inside a callback whose exceptions are
    only printed ("Exception ignored in ..."), e.g. logging's at-fork hook while pyroute2
    forks into a namespace; the build would go on as if no key was pressed. Such a lost
    KeyboardInterrupt comes back as a new SIGINT, sent from a timer thread a moment later,
    so that it lands once the callback has returned (signal.raise_signal would run the
    handler inside it again); should it be lost again, this hook sends the next one."""
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            threading.Timer(RESEND_AFTER, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


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
