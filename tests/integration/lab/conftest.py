"""Fixtures for lab integration tests: unique lab ids, guaranteed teardown, and a check
that a torn-down lab left nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from lab import build, names
from lab.plan import STATE_ROOT

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
