from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overcast import exitcodes
from overcast.cli import main
from tests.conftest import shared_data
from tests.fresh import run_overcast

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


MONITORED = "sites: {}\nguard:\n  prefixes: {45.161.192.0/22: {origins: [64500]}}\n"
RIS_LIVE = shared_data("bgp") / "ris-live-stream.json"  # one alert for MONITORED


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["guard", "replay", "--config", "{config}", str(RIS_LIVE)],
        ["guard", "roa-diff", "--config", "{config}", "{config}", "{config}"],
    ],
)
def test_a_guard_that_monitors_nothing_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    config = write(tmp_path, "overcast.yaml", "sites: {}\n")
    assert main([a.format(config=config) for a in argv]) == exitcodes.USAGE
    assert f"{config}: the guard: section monitors nothing; add guard.prefixes" in (
        capsys.readouterr().err
    )


def test_replay_of_a_file_with_no_bgp_data_is_not_an_all_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    junk = write(tmp_path, "updates.gz", b"\x97\xff" * 64)
    assert main(["guard", "replay", "--config", config, junk]) == exitcodes.USAGE
    assert f"no BGP data could be read from {junk}; give MRT" in capsys.readouterr().err
    # An alert from a good file still wins: exit 3, and the bad file is still named.
    assert main(["guard", "replay", "--config", config, junk, str(RIS_LIVE)]) == exitcodes.ALERT
    assert f"no BGP data could be read from {junk}" in capsys.readouterr().err


def test_guard_commands_read_the_guard_section_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistake elsewhere is `overcast validate`'s to report, not a reason to stop watching.
    other = "sites: {hq: {role: enterprise, underlay: banana}}\n" + MONITORED.split("\n", 1)[1]
    config = write(tmp_path, "overcast.yaml", other)
    assert main(["guard", "replay", "--config", config, str(RIS_LIVE)]) == exitcodes.ALERT
    assert main(["validate", config]) == exitcodes.USAGE
    capsys.readouterr()
    # One in the guard section is reported as `validate` reports it: every problem at once,
    # each located in the file.
    bad = MONITORED.replace("[64500]", "[64500], max_length: 99") + "  min_peers: 0\n  x: 1\n"
    config = write(tmp_path, "overcast.yaml", bad)
    assert main(["guard", "replay", "--config", config, str(RIS_LIVE)]) == exitcodes.USAGE
    replay = capsys.readouterr().err.splitlines()
    assert main(["validate", config]) == exitcodes.USAGE
    validate = capsys.readouterr().err.splitlines()
    assert replay[0] == f"overcast: 3 problem(s) in {config}:"
    assert replay[1:] == [line.strip() for line in validate[1:]]
    assert replay[1].startswith(f"{config}:3:3: guard.prefixes.45.161.192.0/22.max_length:")
    assert replay[3] == f"{config}:5:3: guard.x: unknown key 'x'; remove it or fix its spelling"
    # And the section's own cross-checks (an `ignore` that carves out of nothing), in a file
    # with nothing but a guard: section.
    config = write(
        tmp_path,
        "overcast.yaml",
        "guard:\n  prefixes:\n    45.161.192.0/22: {origins: [64500]}\n"
        "    192.0.2.0/24: {ignore: true}\n",
    )
    assert main(["guard", "replay", "--config", config, str(RIS_LIVE)]) == exitcodes.USAGE
    assert f"{config}:2:3: guard.prefixes.192.0.2.0/24.ignore: 'ignore' carves" in (
        capsys.readouterr().err
    )


def test_guard_replay_starts_without_the_other_parts_schemas(tmp_path: Path) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    run = run_overcast("guard", "replay", "--config", config, str(RIS_LIVE))
    others = ("attest", "bridge", "controller", "gateway", "lab", "overcast.config")
    assert run.imported(*others) == [], run.stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:99999", "is neither host:port nor a socket path"),
        ("/nonexistent/log", "no socket at /nonexistent/log; is the syslog daemon running?"),
    ],
)
def test_bad_syslog_address_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str, message: str
) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    argv = ["guard", "replay", "--config", config, "--syslog", address, str(RIS_LIVE)]
    assert main(argv) == exitcodes.USAGE
    assert message in capsys.readouterr().err


def test_a_syslog_that_goes_away_does_not_stop_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(path)  # closed below: the path stays, nobody reads it (ECONNREFUSED)
    argv = ["guard", "replay", "--config", config, "--syslog", path, str(RIS_LIVE)]
    assert main(argv) == exitcodes.ALERT
    out, err = capsys.readouterr()
    assert "subprefix-origin" in out
    assert f"syslog {path}: event not sent" in err


@pytest.mark.parametrize("port", ["0", "70000", "-1", "http"])
def test_bad_metrics_port_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    with pytest.raises(SystemExit) as exit_:
        main(["guard", "watch", "--config", config, f"--metrics-port={port}"])
    assert exit_.value.code == exitcodes.USAGE
    assert f"'{port}' is not a port; give 1-65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"192.0.2.0/24: {asn: 64500}\n192.0.2.0/24: {asn: 64501}\n", "duplicate key"),
        (b"\x97\xff not text", "is not UTF-8 text; give a BGPalerter prefixes.yml"),
        (b"192.0.2.0/24: [\n", "YAML syntax error"),
        (b"a: " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested more than 64 levels deep"),
        (MONITORED.encode(), "looks like an overcast.yaml (it has guard: and sites:), not a"),
    ],
)
def test_import_bgpalerter_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    src = write(tmp_path, "prefixes.yml", content)
    assert main(["guard", "import-bgpalerter", src]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert message in err and src in err
    assert "internal error" not in err and "\n" not in err.strip()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty; give rpki-client -j or Routinator output"),
        (b"\x97\xff", "is not UTF-8 text"),
    ],
)
def test_roa_diff_bad_vrp_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    vrps = write(tmp_path, "vrps.json", content)
    assert main(["guard", "roa-diff", "--config", config, vrps, vrps]) == exitcodes.USAGE
    assert f"VRP file {vrps} {message}" in capsys.readouterr().err


def test_roa_diff_missing_vrp_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "overcast.yaml", MONITORED)
    missing = str(tmp_path / "nope.json")
    assert main(["guard", "roa-diff", "--config", config, missing, missing]) == exitcodes.USAGE
    assert capsys.readouterr().err == (
        f"overcast: cannot read VRP file {missing}: No such file or directory\n"
    )


def md5_config(tmp_path: Path, password: bytes, mode: int) -> str:
    """A config whose one BGP neighbour has a password file, listening on a free port."""
    secret = tmp_path / "bgp.password"
    secret.write_bytes(password)
    secret.chmod(mode)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bgp = (
        "    bgp:\n      local_asn: 65010\n      router_id: 192.0.2.10\n"
        f"      listen: 127.0.0.1\n      port: {port}\n"
        "      neighbours: {127.0.0.2: {asn: 64500, password_file: bgp.password}}\n"
    )
    return write(tmp_path, "overcast.yaml", MONITORED + "  feeds:\n" + bgp)


@pytest.mark.parametrize(
    ("password", "mode", "message"),
    [
        (b"hunter2\n", 0o644, "is readable by other users; run 'chmod 600 {path}'"),
        (b"hunter2" * 12, 0o600, "is 84 bytes; TCP-MD5 keys are at most 80 bytes"),
        (b"\n", 0o600, "password file {path} is empty"),
    ],
)
def test_watch_refuses_a_bad_password_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], password: bytes, mode: int, message: str
) -> None:
    """Checked before any socket opens: exit 2, the file and the fix named, no secret."""
    config = md5_config(tmp_path, password, mode)
    assert main(["guard", "watch", "--config", config]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert f"{config}: guard.feeds.bgp.neighbours: password file {tmp_path / 'bgp.password'}" in err
    assert message.format(path=tmp_path / "bgp.password") in err
    assert "hunter2" not in err and "Traceback" not in err


def test_watch_on_a_kernel_without_tcp_md5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a kernel answers ENOPROTOOPT, as this one does for an option it does not know."""
    from bgp_guard.feeds import tcp_md5

    monkeypatch.setattr(tcp_md5, "TCP_MD5SIG", 0x7FFF)
    config = md5_config(tmp_path, b"hunter2\n", 0o600)
    assert main(["guard", "watch", "--config", config]) == exitcodes.FAILURE
    err = capsys.readouterr().err
    assert "this kernel has no TCP-MD5 (RFC 2385) support, needed for the password of " in err
    assert "neighbour 127.0.0.2; use a kernel built with CONFIG_TCP_MD5SIG" in err
    assert "hunter2" not in err and "Traceback" not in err


def test_replay_as_a_program_exits_at_once_with_all_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`guard replay` run as the program skips the interpreter's teardown: its exit code and
    every event still come out, through a pipe (block-buffered) as in-process."""
    config = write(tmp_path, "overcast.yaml", MONITORED)
    command = ["guard", "replay", "--json", "--config", config, str(RIS_LIVE), str(RIS_LIVE)]
    assert main(command) == exitcodes.ALERT
    expected = capsys.readouterr().out
    done = subprocess.run(
        [sys.executable, "-m", "overcast", *command],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == exitcodes.ALERT, done.stderr
    assert done.stdout == expected and expected.count("\n") >= 1
    assert "records from 2 file(s)" in done.stderr
