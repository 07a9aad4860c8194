from pathlib import Path

import pytest

from overcast.cli import main


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
