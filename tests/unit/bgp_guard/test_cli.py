from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from overcast import exitcodes
from overcast.cli import main

PREFIXES_YML = """
192.0.2.0/24:
  description: HQ
  asn: 64500
  ignoreMorespecifics: false
  ignore: false
  group: noc
  path:
    - match: ".*65099.*"
      matchDescription: never via AS65099
    - notMatch: "64501,64500$"
      minLength: 2
2001:db8::/32:
  asn: [64500, 64501]
  ignoreMorespecifics: true
options:
  monitorASns:
    '64500':
      group: noc
      upstreams: [64501, 64502]
"""


def test_import_bgpalerter_prints_loadable_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "prefixes.yml"
    src.write_text(PREFIXES_YML)
    assert main(["guard", "import-bgpalerter", str(src)]) == exitcodes.OK
    out, err = capsys.readouterr()
    assert "'group' has no equivalent" in err
    guard = yaml.safe_load(out)["guard"]
    assert guard["prefixes"]["192.0.2.0/24"]["path_rules"][1] == {
        "miss": "64501,64500$",
        "min_path_length": 2,
    }
    assert guard["own_asns"] == {"64500": {"upstreams": [64501, 64502]}}
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\n" + out)
    assert main(["validate", str(config)]) == exitcodes.OK


def test_bgpalerter_file_is_used_directly(tmp_path: Path) -> None:
    from bgp_guard.cli import load_guard_config

    (tmp_path / "prefixes.yml").write_text(PREFIXES_YML)
    config = tmp_path / "overcast.yaml"
    config.write_text(
        "sites: {}\nguard:\n  bgpalerter_file: prefixes.yml\n"
        "  prefixes: {203.0.113.0/24: {announced: false}}\n"
    )
    guard = load_guard_config(str(config))
    assert sorted(map(str, guard.prefixes)) == ["192.0.2.0/24", "2001:db8::/32", "203.0.113.0/24"]
    assert guard.own_asns[64500].upstreams == (64501, 64502)


def test_bad_bgpalerter_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "prefixes.yml"
    src.write_text("192.0.2.0/24: {asn: notanumber}\n")
    assert main(["guard", "import-bgpalerter", str(src)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "prefixes.yml" in err and "192.0.2.0/24" in err and "AS64500" in err
    assert "Traceback" not in err


def test_roa_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard:\n  prefixes: {192.0.2.0/24: {origins: [64500]}}\n")
    roa = {"asn": 64500, "prefix": "192.0.2.0/24", "maxLength": 24, "ta": "t"}
    other = {"asn": 64509, "prefix": "203.0.113.0/24", "maxLength": 24, "ta": "t"}
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"roas": [roa, other]}))
    new.write_text(json.dumps({"roas": [{**roa, "asn": 64501}]}))
    code = main(["guard", "roa-diff", "--config", str(config), str(old), str(new), "--json"])
    assert code == exitcodes.ALERT
    events = json.loads(capsys.readouterr().out)
    assert [e["rationale"] for e in events] == [
        "ROA AS64500 192.0.2.0/24 max-length 24 was removed: 192.0.2.0/24 from AS64500 goes "
        "from valid to not-found.",
        "ROA AS64501 192.0.2.0/24 max-length 24 was added: the validity of 192.0.2.0/24 "
        "does not change.",
    ]
    assert main(["guard", "roa-diff", "--config", str(config), str(old), str(old)]) == 0


def test_missing_data_file_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard:\n  asrel_file: as-rel.txt\n")
    code = main(["guard", "replay", "--config", str(config), str(config)])
    assert code == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "guard.asrel_file: cannot read AS relationship file" in err
    assert "relative to the config file" in err and "Traceback" not in err
