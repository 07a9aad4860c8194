"""`overcast --help` and `overcast validate` start without the parts' heavy libraries.

Each part's cli.py imports OVS, netlink, os-ken, the HTTP stacks and cryptography inside the
handlers that use them; imported at the top, they made every command take ~0.7 s to start
instead of ~0.17 s. The check runs in a fresh interpreter, so whatever this test process has
already imported does not count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fresh import run_overcast

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
    run = run_overcast(*argv)
    assert run.code == 0, "\n".join(run.output) + run.stderr
    heavy = run.imported(*HEAVY)
    assert heavy == [], (
        f"overcast {command} imported {', '.join(heavy)}; import them "
        "inside the handler that needs them (see lab/cli.py)"
    )
