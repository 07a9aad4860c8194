"""A Ctrl-C that Python only prints ("Exception ignored in ...") because it landed in a
callback, as in logging's at-fork hook while pyroute2 forks, still stops the lab's work."""

from __future__ import annotations

import gc
import sys
import time

import pytest

from lab import interrupt


class _SwallowsCtrlC:
    """Raises in __del__, where Python can only report the exception, never raise it."""

    def __del__(self) -> None:
        raise KeyboardInterrupt


def test_a_ctrl_c_lost_in_a_callback_is_delivered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored afterwards
    interrupt.redeliver_lost_interrupts()
    with pytest.raises(KeyboardInterrupt):
        _SwallowsCtrlC()  # dropped at once: its KeyboardInterrupt is "ignored"
        gc.collect()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the lab's work, going on
            time.sleep(0.01)
