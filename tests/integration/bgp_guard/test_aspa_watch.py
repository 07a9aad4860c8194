"""ASPA in `overcast guard watch` against a real gobgpd: gobgpd is our customer (upstream
verification, with the neighbour check) and announces a monitored prefix through AS64501,
which does not attest gobgpd's AS as its provider: aspa-invalid. The ASPA file is then
rewritten while the watch runs, as rpki-client rewrites its output, and the route held
(nobody re-announces it) is verified again: resolved when the attestation appears, ongoing
again when it goes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from overcast import exitcodes
from tests.conftest import require_binaries
from tests.integration.bgp_guard.conftest import GOBGP_ASN, ns_run
from tests.integration.bgp_guard.test_watch import US, _next_event, guard_watch

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

THEM = "192.0.2.1"
CONFIG = f"""
sites: {{}}
guard:
  prefixes:
    198.51.100.0/24: {{origins: [64500]}}
  aspa: {{file: rpki.json}}
  feeds:
    bgp:
      local_asn: 65010
      router_id: {US}
      neighbours: {{{THEM}: {{asn: {GOBGP_ASN}, relationship: customer}}}}
      connect: [{THEM}]
      local_address: {US}
      hold_time: 9
"""


def publish(path: Path, providers_of_64501: list[int], mtime: float) -> None:
    """Write the file as a validator does (a new file renamed over the old one)."""
    aspas = [
        {"customer_asid": 64500, "expires": 1900000000, "providers": [64501]},
        {"customer_asid": 64501, "expires": 1900000000, "providers": providers_of_64501},
    ]
    new = path.with_suffix(".tmp")
    new.write_text(json.dumps({"roas": [], "aspas": aspas}))
    os.utime(new, (mtime, mtime))
    new.rename(path)


def test_aspa_reload_re_verifies_a_live_route(netns: str, tmp_path: Path) -> None:
    require_binaries("gobgpd", "gobgp")
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    rpki = tmp_path / "rpki.json"
    publish(rpki, [64999], 1_000_000)
    with guard_watch(netns, tmp_path, config) as watch:
        gobgp, lines = watch.gobgp, watch.lines
        deadline = time.monotonic() + 30
        while "established" not in ns_run(netns, *gobgp, "neighbor", US).lower():
            assert time.monotonic() < deadline, "BGP session did not come up"
            time.sleep(0.1)
        # gobgpd prepends its own AS: the guard hears GOBGP_ASN 64501 64500.
        ns_run(netns, *gobgp, "global", "rib", "add", "198.51.100.0/24", "aspath", "64501,64500")
        ns_run(netns, *gobgp, "global", "rib", "add", "203.0.113.0/24", "aspath", "64502")
        _, event = _next_event(lines, time.monotonic() + 30)
        assert (event["type"], event["state"]) == ("aspa-invalid", "ongoing"), event
        assert event["prefix"] == "198.51.100.0/24" and event["offending_as"] == GOBGP_ASN
        assert f"AS{GOBGP_ASN} is not an attested provider of AS64501" in event["rationale"]
        assert event["example_path"] == [GOBGP_ASN, 64501, 64500]
        publish(rpki, [GOBGP_ASN, 64999], 2_000_000)  # AS64501 attests gobgpd's AS
        _, event = _next_event(lines, time.monotonic() + 30)
        assert (event["type"], event["state"]) == ("aspa-invalid", "resolved"), event
        assert "no longer ASPA invalid" in event["rationale"]
        publish(rpki, [64999], 3_000_000)  # and withdraws the attestation again
        _, event = _next_event(lines, time.monotonic() + 30)
        assert (event["type"], event["state"]) == ("aspa-invalid", "ongoing"), event
        assert lines.empty()  # 203.0.113.0/24 is not monitored: never verified
    assert watch.returncode == exitcodes.ALERT, watch.stderr
