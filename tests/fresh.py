"""`overcast` run in a fresh interpreter, for the tests of what a command imports: whatever
the test process has already imported does not count there."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The command's own output comes first; the last line is its exit code and sys.modules.
CHILD = """
import json, sys
from overcast.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help exits from argparse
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@dataclass(frozen=True)
class Run:
    code: int | str | None  # what main returned (or --help's SystemExit code)
    modules: frozenset[str]  # imported by the end of the command
    output: list[str]  # the command's stdout, by line
    stderr: str

    def imported(self, *packages: str) -> list[str]:
        """Those of `packages` (or modules of them) that the command imported."""
        return sorted(
            p for p in packages if any(m == p or m.startswith(f"{p}.") for m in self.modules)
        )


def run_overcast(*argv: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    *output, last = done.stdout.splitlines()
    result = json.loads(last)
    return Run(result["code"], frozenset(result["modules"]), output, done.stderr)
