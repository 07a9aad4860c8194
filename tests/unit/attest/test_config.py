"""The `attest:` config section: validated by `overcast validate`."""

from __future__ import annotations

import pytest

from overcast.config import InvalidConfig, loads

BASE = """
sites:
  hq: {role: enterprise, underlay: 192.0.2.1}
  cloud-a: {role: provider, underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a]}
"""


def test_defaults_measure_the_software_of_every_site() -> None:
    config = loads(BASE + "attest: {}\n")
    assert config.attest is not None
    assert config.attest.required(list(config.sites)) == ["hq", "cloud-a"]
    assert set(config.attest.measure) == {"overcast", "wireguard-go", "ovs-vswitchd"}
    assert config.attest.pcr == 15
    assert loads(BASE).attest is None


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("{sites: [cloud-z]}", "attest.sites.0", "unknown site 'cloud-z'"),
        ("{measure: {wg: usr/bin/wg}}", "attest.measure.wg", "absolute path"),
        ("{accept: {wg: ['" + "ab" * 32 + "']}}", "attest.accept.wg", "not measured"),
        ("{accept: {overcast: [nothex]}}", "attest.accept.overcast.0", "not a SHA-256 digest"),
        ("{pcr: 16}", "attest.pcr", "less than or equal to 15"),
        ("{measure: {config: /etc/x}}", "attest.measure.config", "not a measurement name"),
        ("{interval_s: 0}", "attest.interval_s", "greater than or equal to 1"),
    ],
)
def test_bad_sections_name_the_key_and_the_fix(section: str, path: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as exc:
        loads(BASE + f"attest: {section}\n")
    assert any(e.path.startswith(path) and message in e.message for e in exc.value.errors), [
        (e.path, e.message) for e in exc.value.errors
    ]
