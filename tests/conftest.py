"""Shared test set-up.

Tests marked `root` need root, network namespaces and real daemons. Outside CI they skip
with the reason; with CI=true a missing privilege or binary is a failure, because CI runs
as root on a machine that `.ci/run` has provisioned and must exercise the real thing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
    """A folder of public sample data kept beside the repo, not in it (e.g. "bgp"):
    $OVERCAST_SHARED_DATA/<name> if that is set, else shared/data/<name> in the folder that holds
    the checkout, or in one above it (a worktree in wt/NAME finds the shared/ beside wt/).
    Missing data fails with the fix, even outside CI: the tests that read it are not optional."""
    if "OVERCAST_SHARED_DATA" in os.environ:
        bases = [Path(os.environ["OVERCAST_SHARED_DATA"])]
    else:
        bases = [up / "shared" / "data" for up in Path(__file__).resolve().parents[1].parents]
    for base in bases:
        if (base / name).is_dir():
            return base / name
    where = bases[0] if len(bases) == 1 else "../shared/data beside the checkout"
    pytest.fail(
        f"no shared sample data '{name}' in {where}: put the project's shared/ folder beside "
        "the checkout, or set OVERCAST_SHARED_DATA to its data/ folder",
        pytrace=False,
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root"):
        require(os.geteuid() == 0, "needs root for network namespaces")
        require(os.path.exists("/proc/self/ns/net"), "needs network namespace support")
        require_binaries("ip")
