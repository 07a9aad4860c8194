"""`overcast bridge keys` and `overcast bridge plan`: data on stdout, fixes on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overcast import exitcodes
from overcast.cli import main

CONFIG = """\
sites:
  hq:    {role: enterprise, underlay: 192.0.2.1}
  cloud: {role: provider, underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "overcast.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_keys_then_plan(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys")
    assert main(["bridge", "keys", "generate", config, "--keys", keys, "--json"]) == exitcodes.OK
    public = json.loads(capsys.readouterr().out)
    assert set(public) == {"hq", "cloud"}

    assert main(["bridge", "plan", config, "--site", "hq", "--keys", keys, "--json"]) == 0
    out = capsys.readouterr().out
    plan = json.loads(out)
    assert plan["wireguard_interfaces"][0]["public_key"] == public["hq"]
    assert plan["wireguard_interfaces"][0]["peers"][0]["public_key"] == public["cloud"]
    assert plan["segments"][0]["inner_mtu"] == 1390
    assert plan["fabric_ports"] == [
        {
            "name": "vx100-1",
            "kind": "tunnel",
            "segment": "finance",
            "macs": [],
            "peer": "cloud",
            "underlay": "underlay",
        }
    ]
    private = (tmp_path / "keys" / "hq.key").read_text().strip()
    assert private not in out

    assert main(["bridge", "plan", config, "--site", "hq", "--keys", keys]) == 0
    text = capsys.readouterr().out
    assert "inner MTU 1390, TCP MSS 1350 (IPv4)" in text
    assert "vx100-1        to cloud" in text
    assert private not in text


def test_plan_errors(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys")
    assert main(["bridge", "plan", config, "--site", "hq", "--keys", keys]) == exitcodes.FAILURE
    assert "overcast bridge keys generate CONFIG --keys" in capsys.readouterr().err
    main(["bridge", "keys", "generate", config, "--keys", keys])
    assert main(["bridge", "plan", config, "--site", "nope", "--keys", keys]) == exitcodes.USAGE
    assert "unknown site 'nope'; use one of: hq, cloud" in capsys.readouterr().err
    argv = ["bridge", "plan", config, "--site", "hq", "--keys", keys, "--prefix", "X"]
    assert main(argv) == exitcodes.USAGE
    assert "interface prefix 'X'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cloud.pub", "cloud.key"])
def test_binary_key_file_is_named_not_a_crash(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    keys = tmp_path / "keys"
    main(["bridge", "keys", "generate", config, "--keys", str(keys)])
    (keys / "cloud.pub").unlink()
    (keys / name).write_bytes(b"\xff\xfe\x00 not a key")
    capsys.readouterr()
    code = main(["bridge", "plan", config, "--site", "hq", "--keys", str(keys)])
    err = capsys.readouterr().err
    assert code == exitcodes.FAILURE
    assert f"key in {keys / name} is not a WireGuard key" in err
    assert "internal error" not in err


def test_keys_dir_that_is_a_file(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", "keys", "generate", config, "--keys", config]) == exitcodes.FAILURE
    assert f"overcast: {config} is not a directory; give a key directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_root_commands_say_they_need_root(
    config: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    keys = str(tmp_path / "keys")
    main(["bridge", "keys", "generate", config, "--keys", keys])
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    argv = ["bridge", command, config, "--site", "hq", "--keys", keys, "--netns", "hq"]
    assert main(argv) == exitcodes.FAILURE
    assert f"overcast bridge {command} needs root" in capsys.readouterr().err


def test_status_of_a_missing_namespace_says_to_bring_the_site_up(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = str(tmp_path / "keys")
    main(["bridge", "keys", "generate", config, "--keys", keys])
    monkeypatch.setattr("os.geteuid", lambda: 0)  # the namespace check needs no privilege
    argv = ["bridge", "status", config, "--site", "hq", "--keys", keys, "--netns", "ocnone0"]
    assert main(argv) == exitcodes.FAILURE
    assert "site hq is not up there; bring it up with `overcast bridge up" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("netns", ["bad/ns", "..", ""])
def test_netns_must_be_a_name(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], netns: str
) -> None:
    argv = ["bridge", "status", config, "--site", "hq", "--keys", str(tmp_path), "--netns", netns]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == exitcodes.USAGE
    assert f"{netns!r} is not a namespace name; give the name `ip netns list` shows" in (
        capsys.readouterr().err
    )


def test_keys_export_leaves_the_private_key_out_unless_asked(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import wgconfig

    keys = str(tmp_path / "keys")
    main(["bridge", "keys", "generate", config, "--keys", keys])
    public = (tmp_path / "keys" / "cloud.pub").read_text().strip()
    private = (tmp_path / "keys" / "hq.key").read_text().strip()
    capsys.readouterr()
    assert main(["bridge", "keys", "export", config, "hq", "--keys", keys]) == exitcodes.OK
    text = capsys.readouterr().out
    assert private not in text
    assert "# PrivateKey = (left out; overcast bridge keys export --with-private-key)" in text
    path = tmp_path / "hq.conf"
    path.write_text(text)
    parsed = wgconfig.WGConfig(str(path))
    parsed.read_file()
    interface = {k: parsed.interface[k] for k in ("Address", "ListenPort", "MTU")}
    assert interface == {"Address": "100.64.0.1/24", "ListenPort": 51820, "MTU": 1440}
    assert "PrivateKey" not in parsed.interface
    assert parsed.peers[public]["Endpoint"] == "198.51.100.1:51820"
    assert parsed.peers[public]["AllowedIPs"] == "100.64.0.2/32"

    argv = ["bridge", "keys", "export", config, "hq", "--keys", keys, "--with-private-key"]
    assert main(argv) == exitcodes.OK
    assert f"PrivateKey = {private}" in capsys.readouterr().out


def test_keys_rotate_and_revoke_without_running_sites(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = str(tmp_path / "keys")
    main(["bridge", "keys", "generate", config, "--keys", keys, "--json"])
    first = json.loads(capsys.readouterr().out)
    assert main(["bridge", "keys", "rotate", config, "hq", "--keys", keys, "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["old_public_key"] == first["hq"] != rotated["new_public_key"]
    assert main(["bridge", "keys", "revoke", config, "cloud", "--keys", keys]) == 0
    assert "no running site given (--at)" in capsys.readouterr().out
    # A revoked site is nobody's peer, and cannot be planned until rotated back in.
    assert main(["bridge", "plan", config, "--site", "hq", "--keys", keys, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wireguard_interfaces"][0]["peers"] == []
    argv = ["bridge", "plan", config, "--site", "cloud", "--keys", keys]
    assert main(argv) == exitcodes.USAGE
    assert "site 'cloud' is revoked; give it a new key" in capsys.readouterr().err
    argv = ["bridge", "keys", "rotate", config, "hq", "--keys", keys, "--at", "hq-no-netns"]
    assert main(argv) == exitcodes.USAGE
    assert "is not SITE=NETNS:KEYDIR" in capsys.readouterr().err


def test_keys_rotate_at_a_site_that_does_not_run_changes_no_key(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    main(["bridge", "keys", "generate", config, "--keys", str(keys)])
    before = (keys / "hq.pub").read_text()
    monkeypatch.setattr("os.geteuid", lambda: 0)  # the namespace check needs no privilege
    argv = ["bridge", "keys", "rotate", config, "hq", "--keys", str(keys),
            "--at", f"hq=ocnone0:{tmp_path / 'hq'}"]  # fmt: skip
    assert main(argv) == exitcodes.FAILURE
    assert "network namespace 'ocnone0' does not exist" in capsys.readouterr().err
    assert (keys / "hq.pub").read_text() == before
