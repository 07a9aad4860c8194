"""Shared test set-up.

Tests marked `root` need root, network namespaces and real daemons. Outside CI they skip
with the reason; with CI=true a missing privilege or binary is a failure, because CI runs
as root on a machine that `.ci/run` has provisioned and must exercise the real thing.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests import shared

# A shell without job control starts a background job with SIGINT ignored, and the commands
# the tests start inherit that. The tests that press Ctrl-C on a command (and the one of
# lab.interrupt's redelivery) need it delivered as at a terminal, however pytest was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (or fail in CI) unless `condition` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true, but {reason}: integration tests must run in CI, not skip")
    pytest.skip(reason)


def require_binaries(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    require(not missing, f"missing {', '.join(missing)} (run ./dev test to install)")


def shared_data(name: str) -> Path:
    """A folder of public sample data (e.g. "bgp"), found as tests/shared.py says. Missing data
    fails with the fix, even outside CI: the tests that read it are not optional."""
    try:
        return shared.data_dir(name)
    except LookupError as e:
        pytest.fail(str(e), pytrace=False)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root"):
        require(os.geteuid() == 0, "needs root for network namespaces")
        require(os.path.exists("/proc/self/ns/net"), "needs network namespace support")
        require_binaries("ip")
