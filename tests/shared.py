"""Where the public sample data kept beside the repo, not in it, lives (tests and bench/)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "OVERCAST_SHARED_DATA"


def data_dir(name: str) -> Path:
    """$OVERCAST_SHARED_DATA/<name> if that is set, else shared/data/<name> in the folder that
    holds the checkout, or in one above it (a worktree in wt/NAME finds the shared/ beside wt/).
    LookupError naming the fix if there is none."""
    if ENV in os.environ:
        bases = [Path(os.environ[ENV])]
    else:
        bases = [up / "shared" / "data" for up in Path(__file__).resolve().parents[1].parents]
    for base in bases:
        if (base / name).is_dir():
            return base / name
    where = bases[0] if ENV in os.environ else "../shared/data beside the checkout"
    raise LookupError(
        f"no shared sample data '{name}' in {where}: put the project's shared/ folder beside "
        f"the checkout, or set {ENV} to its data/ folder"
    )
