"""Fixtures for lab integration tests: unique lab ids, guaranteed teardown, and a check
that a torn-down lab left nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from lab import build, names
from lab.plan import STATE_ROOT
from lab.registry import Registry

ROOT = Path(__file__).parents[3]


def overcast(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the `overcast` command line from this checkout, as a user would."""
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "overcast", *args],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def interrupted_once(args: list[str], lab_id: str, program: str, timeout: float) -> tuple[int, str]:
    """Run `overcast ARGS`, press Ctrl-C once the lab's registry records a `program` (with
    something already built, or the test would prove nothing), and return the exit code and
    what it printed on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "overcast", *args],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        registry = Registry(STATE_ROOT / lab_id)
        deadline = time.monotonic() + 60
        while not any(e.program == program for e in registry.entries()):
            assert proc.poll() is None, f"{args} finished before it could be interrupted"
            assert time.monotonic() < deadline, f"{args} made no progress"
            time.sleep(0.01)
        assert leftovers(lab_id), "nothing built yet: the test would prove nothing"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def leftovers(lab_id: str) -> list[str]:
    """Everything on the machine that still carries `lab_id`: namespaces, processes,
    files, wireguard-go UAPI sockets, interfaces in the root namespace."""
    found = [f"netns {n}" for n in netns.listnetns() if n.startswith(lab_id)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if lab_id in cmdline and int(pid) != os.getpid() and "pytest" not in cmdline:
            found.append(f"process {pid}: {cmdline.strip()}")
    if (STATE_ROOT / lab_id).exists():
        found.append(f"dir {STATE_ROOT / lab_id}")
    wg = Path("/var/run/wireguard")
    if wg.is_dir():
        found += [f"socket {p}" for p in wg.iterdir() if p.name.startswith(lab_id)]
    with IPRoute() as ipr:
        found += [
            f"interface {link.get('ifname')}"
            for link in ipr.get_links()
            if lab_id in (link.get("ifname") or "")
        ]
    return found


@pytest.fixture
def lab_id() -> Iterator[str]:
    """A fresh lab id, torn down (from its registry) after the test whatever happened."""
    lab_id = names.new_lab_id()
    try:
        yield lab_id
    finally:
        build.down(STATE_ROOT / lab_id)
