"""`overcast validate`: every bad config gets a message naming its path and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overcast import exitcodes
from overcast.cli import main
from overcast.config import InvalidConfig, L2Segment, L3Segment, loads

GOOD = """\
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2}
  cloud-a: {role: provider,   underlay: 198.51.100.1, provider: vendor-a}
  cloud-b: {role: provider,   underlay: 203.0.113.1, provider: vendor-b}
providers:
  vendor-a: {description: first cloud}
  vendor-b: {description: second cloud}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a, cloud-b]}
  apps:    {mode: l3, prefixes: [10.20.0.0/16], sites: [hq, branch, cloud-a]}
guard:
  prefixes: {"2001:db8:100::/48": {origins: [64500], upstreams: [64501, 64502]}}
gateway:
  issuer: https://idp.example/
  apps: {crm: {upstream: https://crm.saas.example}}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        loads(text, "t.yaml")
    return [e.render() for e in info.value.errors]


def test_good_config_parses_into_immutable_models() -> None:
    config = loads(GOOD)
    finance = config.segments["finance"]
    assert isinstance(finance, L2Segment)
    assert (finance.vni, finance.vlan, finance.sites) == (100, 10, ("hq", "cloud-a", "cloud-b"))
    assert isinstance(config.segments["apps"], L3Segment)
    assert str(config.sites["cloud-a"].underlay) == "198.51.100.1"
    with pytest.raises(Exception, match="frozen"):
        finance.vni = 5  # type: ignore[misc]


BAD = [
    # (description, replace this, with this, expected rendered error)
    (
        "reused VNI",
        "  apps:",
        "  hr: {mode: l2, vni: 100, vlan: 20, sites: [hq, branch]}\n  apps:",
        "line 11: segments.hr.vni: 100 is already used by segments.finance; pick an unused VNI",
    ),
    (
        "VLAN reused at a shared site",
        "  apps:",
        "  hr: {mode: l2, vni: 101, vlan: 10, sites: [hq, branch]}\n  apps:",
        "segments.hr.vlan: VLAN 10 is already used by segments.finance at site hq; pick another VLAN",
    ),
    (
        "unknown site in a segment",
        "[hq, branch, cloud-a]",
        "[hq, branhc, cloud-a]",
        "segments.apps.sites.1: unknown site 'branhc'; define it under 'sites:' or use one of: "
        "branch, cloud-a, cloud-b, hq",
    ),
    (
        "site listed twice",
        "[hq, branch, cloud-a]",
        "[hq, hq, cloud-a]",
        "segments.apps.sites.1: site 'hq' is listed twice; remove one",
    ),
    (
        "segment with one site",
        "[hq, branch, cloud-a]",
        "[hq]",
        "segments.apps.sites: a segment joins at least two sites; list two or more",
    ),
    (
        "overlapping L3 prefixes",
        "[10.20.0.0/16]",
        "[10.20.0.0/16, 10.20.4.0/24]",
        "segments.apps.prefixes.1: 10.20.4.0/24 overlaps 10.20.0.0/16 in segments.apps; "
        "L3 prefixes must not overlap",
    ),
    (
        "prefix with host bits",
        "[10.20.0.0/16]",
        "[10.20.0.1/16]",
        "segments.apps.prefixes.0: '10.20.0.1/16' has host bits set; write the prefix 10.20.0.0/16",
    ),
    (
        "bad underlay address",
        "underlay: 192.0.2.2}",
        "underlay: 192.0.2.256}",
        "line 3: sites.branch.underlay: '192.0.2.256' is not an IP address; "
        "write it like 192.0.2.1 or 2001:db8::1",
    ),
    (
        "duplicate underlay address",
        "underlay: 192.0.2.2}",
        "underlay: 192.0.2.1}",
        "sites.branch.underlay: 192.0.2.1 is already used by sites.hq; "
        "every site needs its own underlay address",
    ),
    (
        "VNI out of range",
        "vni: 100,",
        "vni: 16777216,",
        "segments.finance.vni: input should be less than or equal to 16777215 (got 16777216)",
    ),
    (
        "reserved VLAN",
        "vlan: 10,",
        "vlan: 4095,",
        "segments.finance.vlan: input should be less than or equal to 4094 (got 4095)",
    ),
    (
        "unknown segment mode",
        "mode: l3,",
        "mode: l4,",
        "segments.apps: mode 'l4' is not known; use 'l2' or 'l3'",
    ),
    (
        "missing VNI",
        "vni: 100, ",
        "",
        "segments.finance.vni: required key is missing; add it",
    ),
    (
        "misspelt key",
        "role: enterprise, underlay: 192.0.2.1",
        "role: enterprise, underlay: 192.0.2.1, undrelay_mtu: 9000",
        "sites.hq.undrelay_mtu: unknown key 'undrelay_mtu'; remove it or fix its spelling",
    ),
    (
        "unknown role",
        "role: enterprise, underlay: 192.0.2.2",
        "role: branch, underlay: 192.0.2.2",
        "sites.branch.role: input should be 'enterprise' or 'provider' (got 'branch')",
    ),
    (
        "unknown provider",
        "provider: vendor-b}",
        "provider: vendor-c}",
        "sites.cloud-b.provider: unknown provider 'vendor-c'; add it under 'providers:' or use "
        "one of: vendor-a, vendor-b",
    ),
    (
        "provider on an enterprise site",
        "role: enterprise, underlay: 192.0.2.1",
        "role: enterprise, underlay: 192.0.2.1, provider: vendor-a",
        "sites.hq.provider: only sites with 'role: provider' run at a provider; remove this key",
    ),
    (
        "site name too long for interface names",
        "  branch:  {",
        "  branch-office-east:  {",
        "sites.branch-office-east: 'branch-office-east' is not a valid name; use 1-10 lower-case "
        "letters, digits or '-', starting with a letter (e.g. 'hq', 'cloud-a')",
    ),
    (
        "duplicate key",
        "  apps:",
        "  finance: {mode: l2, vni: 200, vlan: 20, sites: [hq, branch]}\n  apps:",
        "line 11: segments.finance: duplicate key (first defined on line 10); "
        "merge the two entries or rename one",
    ),
    (
        "underlay MTU too small",
        "underlay: 192.0.2.1}",
        "underlay: 192.0.2.1, underlay_mtu: 576}",
        "sites.hq.underlay_mtu: input should be greater than or equal to 1280 (got 576)",
    ),
    (
        "guard prefix that is not a prefix",
        '"2001:db8:100::/48"',
        '"2001:db8:100::/480"',
        "guard.prefixes.2001:db8:100::/480: '2001:db8:100::/480' is not an IP prefix; "
        "write it like 198.51.100.0/24 or 2001:db8::/32",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_path_and_fix(old: str, new: str, expected: str) -> None:
    assert old in GOOD, "test case no longer matches the base config"
    text = GOOD.replace(old, new, 1)
    errors = errors_of(text)
    assert any(e.endswith(expected) for e in errors), errors


def test_every_error_is_reported_in_one_run() -> None:
    text = (
        GOOD.replace("vni: 100,", "vni: 0,")
        .replace("[hq, branch, cloud-a]", "[hq, nowhere]")
        .replace("underlay: 203.0.113.1", "underlay: banana")
    )
    paths = [e.split(": ")[1] for e in errors_of(text)]
    assert paths == ["sites.cloud-b.underlay", "segments.finance.vni", "segments.apps.sites.1"]


def test_errors_about_an_invalid_site_do_not_cascade() -> None:
    # cloud-b is invalid; segments naming it must not also claim it is unknown.
    text = GOOD.replace("underlay: 203.0.113.1", "underlay: nope")
    assert errors_of(text) == [
        "line 5: sites.cloud-b.underlay: 'nope' is not an IP address; "
        "write it like 192.0.2.1 or 2001:db8::1"
    ]


def test_yaml_syntax_error_reports_line_and_column() -> None:
    [message] = errors_of(GOOD.replace("vlan: 10,", "vlan: [10,"))
    assert message.startswith("line 10: YAML syntax error:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file must be a mapping with a 'sites:' key at the top"),
        ("- a\n- b\n", "the file must be a mapping with a 'sites:' key at the top"),
        ("providers: {}\n", "sites: required key is missing; add it"),
        # A wrong-typed required key is reported once, not also as "missing".
        (
            "sites: [a, b]\n",
            "line 1: sites: must be a mapping ('name: value' entries), not ['a', 'b']",
        ),
    ],
)
def test_wrong_document_shape(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "overcast.yaml"
    path.write_text(text)
    return str(path)


def test_cli_valid_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", write(tmp_path, GOOD)]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "valid" in out
    assert "finance    l2  vni 100 vlan 10  sites hq, cloud-a, cloud-b" in out


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", write(tmp_path, GOOD)]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True
    assert doc["summary"]["segments"]["apps"] == {
        "mode": "l3",
        "sites": ["hq", "branch", "cloud-a"],
        "prefixes": ["10.20.0.0/16"],
        "announce": {},
    }


def test_cli_invalid_exits_2_with_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace("vni: 100,", "vni: -1,").replace("vlan: 10,", "vlan: 0,"))
    assert main(["validate", path]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert f"{path}: 2 problem(s)" in err
    assert f"{path}:10:" in err
    assert "segments.finance.vni" in err and "segments.finance.vlan" in err
    assert "Traceback" not in err


def test_cli_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("vlan: 10,", "vlan: ten,"))
    assert main(["validate", "--json", path]) == exitcodes.USAGE
    [error] = json.loads(capsys.readouterr().out)["errors"]
    assert error["path"] == "segments.finance.vlan"
    assert error["line"] == 10


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == exitcodes.USAGE
    assert "cannot read file: No such file or directory" in capsys.readouterr().err


def test_cli_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "overcast.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["validate", str(path)]) == exitcodes.USAGE
    assert "file is not UTF-8 text; save it as UTF-8" in capsys.readouterr().err


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 10**8 values once expanded: refused after the first 100 000, in well under a second.
        (ALIAS_BOMB + "sites: *h\n", "the YAML expands to more than 100000 values"),
        ("sites: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep"),
        ("sites: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "nested more than 64 levels deep"),
    ],
)
def test_cli_hostile_yaml_is_refused_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    assert main(["validate", write(tmp_path, text)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert expected in err
    assert "internal error" not in err


def test_yaml_syntax_error_is_one_line() -> None:
    [message] = errors_of(GOOD.replace("hq:", "hq:\x00"))
    assert "YAML syntax error: unacceptable character #x0000" in message
    assert "\n" not in message


def test_wrong_typed_section_names_no_python_class() -> None:
    [message] = errors_of(GOOD + "lab: [1]\n")
    assert message.endswith("lab: must be a mapping ('name: value' entries), not [1]")


def test_cli_endless_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/dev/zero"]) == exitcodes.USAGE
    assert "/dev/zero: larger than 4 MiB; is it the config?" in capsys.readouterr().err


def test_a_library_exit_code_does_not_pass_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def uvicorn_like(args: object) -> int:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE when it cannot bind

    monkeypatch.setattr("overcast.cli._validate", uvicorn_like)
    assert main(["validate", "overcast.yaml"]) == exitcodes.FAILURE
    assert "stopped (exit 3 from a library; see above)" in capsys.readouterr().err
