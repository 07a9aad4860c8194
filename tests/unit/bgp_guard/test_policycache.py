"""The compiled-policy cache of `guard replay`: a hit starts without pydantic and finds the
same events; any change to what the policy came from is a miss; an entry that is not safe
to load, or is damaged, is ignored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bgp_guard import policycache
from overcast import exitcodes
from overcast.cli import main
from tests.conftest import shared_data
from tests.fresh import run_overcast

REPO = Path(__file__).resolve().parents[3]
RIS_LIVE = shared_data("bgp") / "ris-live-stream.json"
# AS268481 announces 45.161.192.0/23 in RIS_LIVE: a sub-prefix hijack unless it may.
MONITORED = "sites: {}\nguard:\n  prefixes: {45.161.192.0/22: {origins: [%s]}}\n"


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def replay(config: Path) -> tuple[list[str], bool]:
    """The event types of a replay in a fresh interpreter, and whether it imported pydantic."""
    run = run_overcast("guard", "replay", "--json", "--config", str(config), str(RIS_LIVE))
    assert run.code in (exitcodes.OK, exitcodes.ALERT), run.stderr
    return [json.loads(e)["type"] for e in run.output], "pydantic" in run.modules


def test_a_second_replay_starts_without_pydantic_and_finds_the_same(
    tmp_path: Path, cache_home: Path
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(MONITORED % 64500)
    assert replay(config) == (["subprefix-origin"], True)
    (entry,) = (cache_home / "overcast" / "guard-policy").iterdir()
    assert entry.stat().st_mode & 0o777 == 0o600
    assert entry.parent.stat().st_mode & 0o777 == 0o700
    assert replay(config) == (["subprefix-origin"], False)
    # Another config is compiled afresh: here the announcing AS may originate the /22, so
    # its /23 is only longer than the prefix allows.
    config.write_text(MONITORED % "64500, 268481")
    assert replay(config) == (["too-specific"], True)
    assert replay(config) == (["too-specific"], False)


def test_a_changed_bgpalerter_file_is_a_miss(tmp_path: Path) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard:\n  bgpalerter_file: prefixes.yml\n")
    prefixes = tmp_path / "prefixes.yml"
    prefixes.write_text("45.161.192.0/22: {asn: 64500, description: HQ}\n")
    assert replay(config) == (["subprefix-origin"], True)
    assert replay(config) == (["subprefix-origin"], False)
    prefixes.write_text("45.161.192.0/22: {asn: [64500, 268481], description: HQ}\n")
    assert replay(config) == (["too-specific"], True)


def test_a_config_that_monitors_nothing_is_refused_every_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_home: Path
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard: {}\n")
    for _ in range(2):
        assert main(["guard", "replay", "--config", str(config), str(RIS_LIVE)]) == 2
        assert "monitors nothing" in capsys.readouterr().err
    assert not (cache_home / "overcast" / "guard-policy").exists()


def compiled_entry(tmp_path: Path) -> tuple[str, Path]:
    config = tmp_path / "overcast.yaml"
    config.write_text(MONITORED % 64500)
    assert main(["guard", "replay", "--config", str(config), str(RIS_LIVE)]) == exitcodes.ALERT
    assert policycache.load(str(config)) is not None
    (entry,) = policycache.directory().iterdir()
    return str(config), entry


def test_an_entry_others_can_write_is_not_loaded(tmp_path: Path) -> None:
    config, entry = compiled_entry(tmp_path)
    entry.chmod(0o622)
    assert policycache.load(config) is None
    entry.chmod(0o600)
    entry.parent.chmod(0o777)
    assert policycache.load(config) is None


def test_a_damaged_entry_is_a_miss_and_the_replay_still_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, entry = compiled_entry(tmp_path)
    entry.write_bytes(entry.read_bytes()[:40])
    assert policycache.load(config) is None
    capsys.readouterr()
    assert main(["guard", "replay", "--json", "--config", config, str(RIS_LIVE)]) == 3
    assert json.loads(capsys.readouterr().out)["type"] == "subprefix-origin"
    assert policycache.load(config) is not None  # compiled and kept again


def test_no_cache_directory_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # not a directory
    config = tmp_path / "overcast.yaml"
    config.write_text(MONITORED % 64500)
    assert main(["guard", "replay", "--json", "--config", str(config), str(RIS_LIVE)]) == 3
    assert policycache.load(str(config)) is None


def test_a_config_read_from_a_pipe_is_read_once(tmp_path: Path) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(MONITORED % 64500)
    done = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m overcast guard replay --json --config "
         f"<(cat {config}) {RIS_LIVE}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == exitcodes.ALERT, done.stderr
    assert json.loads(done.stdout)["type"] == "subprefix-origin"
