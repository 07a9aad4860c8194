"""`overcast attest policy` and `status` without a TPM: digests of a known-good tree, and
what status says before any verifier ran."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from overcast.cli import main

CONFIG = """
sites:
  hq: {role: enterprise, underlay: 192.0.2.1}
  cloud-a: {role: provider, underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a]}
attest:
  measure: {wireguard-go: /usr/bin/wireguard-go}
"""


def test_policy_prints_the_digests_of_this_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    binary = tmp_path / "root/usr/bin/wireguard-go"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"known good\n")
    assert main(["attest", "policy", str(config), "--root", str(tmp_path / "root"), "--json"]) == 0
    digest = hashlib.sha256(b"known good\n").hexdigest()
    assert json.loads(capsys.readouterr().out) == {"wireguard-go": [digest]}
    binary.unlink()
    assert main(["attest", "policy", str(config), "--root", str(tmp_path / "root")]) == 1
    assert "cannot measure" in capsys.readouterr().err


def test_status_without_a_verifier_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["attest", "status", "--state", str(tmp_path)]) == 1
    assert "run 'overcast attest verify'" in capsys.readouterr().err


def test_config_without_an_attest_section_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG.split("attest:")[0])
    assert main(["attest", "policy", str(config)]) == 2
    assert "has no attest: section" in capsys.readouterr().err
