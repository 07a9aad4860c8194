"""Running things in a named network namespace, with errors that say what failed and the fix."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")  # where `ip netns add` keeps named namespaces
COMMAND_TIMEOUT = 10.0


class ApplyError(Exception):
    """Applying or removing a site plan failed; the message names what failed and the fix."""


def require_netns(netns: str) -> None:
    if not (NETNS_DIR / netns).exists():
        raise ApplyError(
            f"network namespace {netns!r} does not exist; create it first (ip netns add {netns})"
        )


def run(netns: str, argv: Sequence[str], *, what: str, fix: str, stdin: str | None = None) -> str:
    """Run `argv` inside `netns`; return its stdout. `stdin` carries secrets (never argv)."""
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(
            f"{what} in namespace {netns} hung for {COMMAND_TIMEOUT}s; {fix}"
        ) from None
    if proc.returncode != 0:
        reason = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise ApplyError(f"{what} in namespace {netns} failed: {reason}; {fix}")
    return proc.stdout


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; ApplyError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ApplyError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
