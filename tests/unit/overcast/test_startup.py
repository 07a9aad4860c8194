"""`overcast --help` and `overcast validate` start without the parts' heavy libraries.

Each part's cli.py imports OVS, netlink, os-ken, the HTTP stacks and cryptography inside the
handlers that use them; imported at the top, they made every command take ~0.7 s to start
instead of ~0.17 s. The check runs in a fresh interpreter, so whatever this test process has
already imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Top-level package names: importing any of their modules puts the package in sys.modules.
HEAVY = (
    "aiohttp",
    "cryptography",
    "eventlet",
    "httpx",
    "jwt",
    "os_ken",
    "ovs",
    "prometheus_client",
    "pyroute2",
    "redis",
    "uvicorn",
    "wgconfig",
)

CHILD = f"""
import json, sys
from overcast.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help exits from argparse
    code = exc.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""

# Every part's section, so that each part's config model is loaded.
CONFIG = """\
sites:
  hq: {role: enterprise, underlay: 192.0.2.1}
  cloud-a: {role: provider, underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a]}
  apps: {mode: l3, prefixes: [10.20.0.0/16], sites: [hq, cloud-a]}
guard:
  prefixes: {"2001:db8:100::/48": {origins: [64500], upstreams: [64501]}}
gateway:
  issuer: https://idp.example/
  apps: {crm: {upstream: https://crm.saas.example, allow: {groups: [sales]}}}
"""


@pytest.mark.parametrize("command", ["--help", "validate"])
def test_starts_without_heavy_imports(command: str, tmp_path: Path) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    argv = [command, str(config)] if command == "validate" else [command]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stdout + done.stderr
    assert result["heavy"] == [], (
        f"overcast {command} imported {', '.join(result['heavy'])}; import them "
        "inside the handler that needs them (see lab/cli.py)"
    )
