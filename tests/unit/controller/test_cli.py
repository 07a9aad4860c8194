"""`overcast controller plan` and the input errors `run` shares with it."""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path

import pytest

from controller.app import ControllerError, Tls
from overcast import exitcodes
from overcast.cli import main
from tests.unit.controller.fixtures import CONFIG, fabric


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "overcast.yaml").write_text(CONFIG)
    (tmp_path / "fabric.json").write_text(fabric().model_dump_json())
    return str(tmp_path / "overcast.yaml"), str(tmp_path / "fabric.json")


def test_plan_prints_groups_and_flows(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, fab = files
    rc = main(["controller", "plan", "--config", config, "--fabric", fab, "--site", "hq"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("site hq: 4 groups, 44 flows")
    assert "table=flood" in out and "normal" not in out.lower()


def test_plan_json_takes_given_port_numbers(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, fab = files
    argv = ["controller", "plan", "--config", config, "--fabric", fab, "--site", "hq"]
    rc = main([*argv, "--ofport", "h1=9", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["ofports"]["h1"] == 9 and 9 not in [
        v for k, v in doc["ofports"].items() if k != "h1"
    ]
    assert [t["name"] for t in doc["tables"]] == [
        "classify",
        "learn",
        "acl",
        "snoop",
        "proxy",
        "eth_dst",
        "flood",
        "advert",
    ]
    assert any(f["table"] == "classify" and f["match"].get("in_port") == 9 for f in doc["flows"])


@pytest.mark.parametrize(
    ("fabric_text", "message"),
    [
        ("{not json", "problem(s) in fabric"),
        (
            "",
            'Invalid JSON: EOF while parsing a value at line 1 column 0; a fabric is JSON: {"switches"',
        ),
        ('{"switches": {"hq": {"site": "hq"}}}', "switches.hq.bridge: Field required"),
        (
            '{"switches": {"hq": {"site": "hq", "bridge": "b", "dpid": 1, '
            '"ports": [{"name": "p", "kind": "access", "segment": "nope"}]}}}',
            "unknown segment 'nope'",
        ),
    ],
)
def test_bad_fabric_is_a_usage_error_naming_the_problem(
    files: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fabric_text: str,
    message: str,
) -> None:
    config, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(fabric_text)
    rc = main(["controller", "plan", "--config", config, "--fabric", str(bad), "--site", "hq"])
    assert rc == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--site", "mars"], "no switch for site 'mars'"),
        (["--site", "hq", "--ofport", "h1"], "write NAME=NUMBER"),
        (["--site", "hq", "--ofport", "hl=5"], "--ofport hl: no such port on site hq's switch"),
    ],
)
def test_plan_argument_errors(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    config, fab = files
    rc = main(["controller", "plan", "--config", config, "--fabric", fab, *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_run_rejects_a_bad_listen_address_before_starting(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, fab = files
    argv = ["controller", "run", "--config", config, "--fabric", fab, "--listen", "nowhere"]
    assert main(argv) == 2
    assert "write HOST:PORT" in capsys.readouterr().err


def test_missing_fabric_file(files: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = files
    argv = ["controller", "plan", "--config", config, "--fabric", "/nonexistent.json"]
    assert main([*argv, "--site", "hq"]) == 2
    assert "cannot read fabric /nonexistent.json" in capsys.readouterr().err


def test_run_needs_all_three_tls_files(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, fab = files
    argv = ["controller", "run", "--config", config, "--fabric", fab, "--tls-cert", "c.pem"]
    assert main(argv) == 2
    assert "TLS needs all of --tls-cert, --tls-key and --tls-ca" in capsys.readouterr().err


def test_unusable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = str(tmp_path / "junk.pem")
    with pytest.raises(ControllerError, match=r"cannot use TLS files .* give PEM files"):
        Tls(junk, junk, junk).check()


def test_run_rejects_a_negative_audit_interval(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, fab = files
    argv = ["controller", "run", "--config", config, "--fabric", fab, "--audit", "-1"]
    assert main(argv) == 2
    assert "--audit -1: give seconds >= 0" in capsys.readouterr().err


def test_binary_fabric_file(
    files: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = files
    (tmp_path / "junk.json").write_bytes(b"\x97\xff\x00 garbage")
    argv = ["controller", "plan", "--config", config, "--fabric", str(tmp_path / "junk.json")]
    assert main([*argv, "--site", "hq"]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert f"fabric {tmp_path / 'junk.json'} is not UTF-8 text; give the fabric JSON file" in err
    assert "internal error" not in err


def test_run_without_root_on_a_low_port_says_so(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, fab = files

    def refused(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refused)  # what a non-root user gets
    monkeypatch.setattr("signal.signal", lambda *_: None)  # keep pytest's own handlers
    argv = ["controller", "run", "--config", config, "--fabric", fab, "--listen", "127.0.0.1:653"]
    assert main(argv) == exitcodes.FAILURE
    assert (
        "cannot listen on 127.0.0.1:653: Permission denied; ports below 1024 need root; "
        "use the OpenFlow port 6653" in capsys.readouterr().err
    )
