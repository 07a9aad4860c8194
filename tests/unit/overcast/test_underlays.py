"""Named underlay networks: every site pair gets one path per network both are on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overcast import exitcodes
from overcast.cli import main
from overcast.config import InvalidConfig, loads, warnings

TWO = """\
underlays:
  isp-a: {description: first carrier}
  isp-b: {description: second carrier}
sites:
  hq:      {role: enterprise, underlay: {isp-b: 198.51.100.1, isp-a: 192.0.2.1}}
  branch:  {role: enterprise, underlay: {isp-a: 192.0.2.2, isp-b: 198.51.100.2}}
  cloud-a: {role: provider, underlay: {isp-a: 192.0.2.3}, provider: vendor-a}
providers:
  vendor-a: {}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        loads(text, "t.yaml")
    return [e.render() for e in info.value.errors]


def test_addresses_follow_the_underlays_order_of_preference() -> None:
    config = loads(TWO)
    assert config.underlay_names() == ["isp-a", "isp-b"]
    assert list(config.addresses("hq")) == ["isp-a", "isp-b"]  # not the site's own order
    assert config.shared_underlays("hq", "branch") == ["isp-a", "isp-b"]
    assert config.shared_underlays("hq", "cloud-a") == ["isp-a"]
    assert warnings(config) == []


def test_a_single_underlay_config_is_one_unnamed_network() -> None:
    config = loads("sites:\n  a: {role: enterprise, underlay: 192.0.2.1}\n")
    assert config.underlay_names() == ["underlay"]
    assert {n: str(a) for n, a in config.addresses("a").items()} == {"underlay": "192.0.2.1"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{isp-a: 192.0.2.2, isp-b: 198.51.100.2}",
            "192.0.2.2",
            "line 6: sites.branch.underlay: with 'underlays:' defined, name the network of "
            "each address, e.g. underlay: {isp-a: 192.0.2.2}",
        ),
        (
            "{isp-a: 192.0.2.3}",
            "{isp-c: 192.0.2.3}",
            "sites.cloud-a.underlay.isp-c: unknown underlay network 'isp-c'; define it under "
            "'underlays:' (in order of preference) or use one of: isp-a, isp-b",
        ),
        (
            "isp-b: 198.51.100.2}",
            "isp-b: 198.51.100.1}",
            "sites.branch.underlay.isp-b: 198.51.100.1 is already used by sites.hq",
        ),
        (
            "{isp-a: 192.0.2.3}",
            "{isp-a: 192.0.2.300}",
            "sites.cloud-a.underlay: network isp-a: '192.0.2.300' is not an IP address",
        ),
        (
            "{isp-a: 192.0.2.3}",
            "{}",
            "sites.cloud-a.underlay: no underlay networks given",
        ),
        (
            "sites: [hq, branch]",
            "sites: [hq, branch]}\n  hr: {mode: l2, vni: 200, vlan: 20, sites: [hq, lone]",
            "segments.hr.sites: sites hq (isp-a, isp-b) and lone (isp-c) share no underlay "
            "network, so there is no path between them; give one an address on the other's "
            "network",
        ),
    ],
)
def test_bad_underlays_name_the_input_and_the_fix(old: str, new: str, expected: str) -> None:
    text = TWO.replace(old, new, 1)
    if "lone" in new:
        text = text.replace(
            "  isp-b: {description: second carrier}\n", "  isp-b: {}\n  isp-c: {}\n"
        )
        text = text.replace(
            "sites:\n", "sites:\n  lone: {role: enterprise, underlay: {isp-c: 203.0.113.9}}\n"
        )
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_validate_warns_when_a_pair_has_no_second_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(TWO.replace("sites: [hq, branch]", "sites: [hq, branch, cloud-a]"))
    assert main(["validate", str(path)]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "2 warning(s)" in out
    assert (
        "sites hq and cloud-a share only underlay isp-a: traffic between them has no failover"
        in out
    )
    assert main(["validate", "--json", str(path)]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and [w["line"] for w in doc["warnings"]] == [11, 11]
    assert doc["summary"]["sites"]["cloud-a"]["underlay"] == {"isp-a": "192.0.2.3"}


def test_single_underlay_configs_validate_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        "sites:\n  a: {role: enterprise, underlay: 192.0.2.1}\n"
        "  b: {role: enterprise, underlay: 192.0.2.2}\n"
        "segments:\n  s: {mode: l2, vni: 1, vlan: 1, sites: [a, b]}\n"
    )
    assert main(["validate", str(path)]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "warning" not in out and "underlay 192.0.2.1" in out
