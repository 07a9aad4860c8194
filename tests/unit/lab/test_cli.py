from pathlib import Path

import pytest

from lab.cli import host_line, host_rows
from overcast.cli import main
from overcast.config import load
from tests.unit.lab.test_plan import make_plan


def test_bad_lab_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "down", "nope"]) == 2
    assert "'nope' is not a lab id" in capsys.readouterr().err


def test_down_takes_an_id_or_all_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "down", "oc1234", "--all"]) == 2
    assert "not both" in capsys.readouterr().err


def test_up_reports_every_config_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: {a: {role: enterprise, underlay: nope}}\nlab: {hosts_per_segment: 0}\n")
    assert main(["lab", "up", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sites.a.underlay" in err and "lab.hosts_per_segment" in err


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["lab", "--help"])
    assert "overcast lab down --all" in capsys.readouterr().out


def test_status_checks_the_lab_id_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "BAD"]) == 2
    assert "'BAD' is not a lab id" in capsys.readouterr().err


def test_up_and_status_list_routed_hosts_with_their_gateways() -> None:
    stretch = Path(__file__).parents[3] / "lab" / "scenarios" / "stretch.yaml"
    rows = host_rows(make_plan(load(stretch)))
    assert [(r["host"], r["mode"]) for r in rows] == [
        ("hq/finance-1", "l2"),
        ("branch/finance-1", "l2"),
        ("hq/guest-1", "l2"),
        ("branch/guest-1", "l2"),
        ("hq/apps-1", "l3"),
        ("branch/apps-1", "l3"),
    ]
    hq_apps = rows[4]
    assert hq_apps | {"netns": ""} == {
        "host": "hq/apps-1",
        "segment": "apps",
        "mode": "l3",
        "netns": "",
        "address": "10.20.1.10/24",
        "gateway": "10.20.1.1",
        "address6": "2001:db8:20:1::a/64",
        "gateway6": "2001:db8:20:1::1",
        "mtu": 1500,
    }
    assert host_line(hq_apps).endswith("(routed, via 10.20.1.1; 2001:db8:20:1::a/64)")
    assert "routed" not in host_line(rows[0])
