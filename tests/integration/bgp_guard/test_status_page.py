"""The status page of `guard watch`, in headless Chromium: a hijack announced by gobgpd
appears among the ongoing events with its rationale, AS path and peers, then moves to the
recent ones when gobgpd withdraws it, without the page reloading; screenshots of both."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.idp import JS, NODE
from tests.conftest import require, require_binaries
from tests.integration.bgp_guard.conftest import GOBGP_ASN, daemon, gobgpd, gobgpd_neighbour, ns_run
from tests.integration.bgp_guard.sinkparts import wait_for
from tests.integration.bgp_guard.test_noc_end_to_end import US, guard_watch
from tests.integration.gateway.sso_peers import require_js

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

THEM, HIJACK, PORT = "192.0.2.1", "203.0.113.0/25", 8081
CONFIG = f"""
sites: {{}}
guard:
  prefixes: {{203.0.113.0/24: {{origins: [64500]}}}}
  feeds:
    bgp: {{local_asn: 65010, router_id: {US}, neighbours: {{{THEM}: {GOBGP_ASN}}},
           connect: [{THEM}], local_address: {US}, hold_time: 9}}
"""


def test_the_status_page_follows_a_hijack_live(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    require(
        os.access("/usr/bin/chromium", os.X_OK),
        "/usr/bin/chromium missing (apt-get install chromium)",
    )
    require_js("playwright-core")
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    argv, gobgp = gobgpd(
        tmp_path, THEM, gobgpd_neighbour(THEM, US, 65010, families=("ipv4-unicast",))
    )
    stages: dict[str, dict[str, Any]] = {}
    with daemon(netns, argv, tmp_path / "gobgpd.log"):
        ns_run(netns, *gobgp, "global", attempts_until=20)
        with guard_watch(netns, config, "--status-port", str(PORT)):
            wait_for(
                lambda: "established" in ns_run(netns, *gobgp, "neighbor", US).lower(), 30, "BGP"
            )
            browser = subprocess.Popen(
                ["ip", "netns", "exec", netns, str(NODE), str(JS / "status_page.mjs"),
                 f"http://127.0.0.1:{PORT}/", HIJACK, str(tmp_path)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert browser.stdout is not None
                for line in browser.stdout:
                    stage = json.loads(line)
                    stages[stage["stage"]] = stage
                    if stage["stage"] == "ready":
                        ns_run(netns, *gobgp, "global", "rib", "add", HIJACK)
                    elif stage["stage"] == "open":  # its screenshot is taken
                        ns_run(netns, *gobgp, "global", "rib", "del", HIJACK)
            finally:
                browser.wait(30)
            assert browser.returncode == 0, browser.stderr.read() if browser.stderr else ""
    assert stages["ready"]["feeds"] and "up" in stages["ready"]["feeds"][0]
    (row,) = stages["open"]["ongoing"]
    assert (row["class"], row["state"]) == ("open", "ongoing")
    kind, prefix, offender, why, path, peers = row["cells"][:6]
    assert (kind, prefix, offender) == ("subprefix-origin (S|0|-|-)", HIJACK, f"AS{GOBGP_ASN}")
    assert why.startswith(f"AS{GOBGP_ASN} originates {HIJACK}, a more-specific of 203.0.113.0/24")
    assert (path, peers) == (str(GOBGP_ASN), "1")
    closed = stages["closed"]
    assert closed["ongoing"] == [] and not closed["reloaded"]
    (row,) = closed["recent"]
    assert (row["class"], row["state"], row["cells"][-1]) == ("closed", "withdrawn", "withdrawn")
    for shot in ("open.png", "closed.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
