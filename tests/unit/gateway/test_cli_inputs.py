"""`overcast gateway serve` on bad files named by the gateway: section: one line naming the
file and the fix, no traceback, before anything listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from overcast import exitcodes
from overcast.cli import main

CONFIG = """\
sites: {{}}
gateway:
  issuer: https://idp.example/
  listen: 192.0.2.1:8443  # not ours: nothing can listen even if the check moved
  metrics_listen: 192.0.2.1:9464
  session_keys_file: {keys}
  apps: {{crm: {{upstream: https://crm.saas.example}}}}
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the session key file (No such file or directory); make one with: "
         "overcast gateway new-session-key >"),
        (b"\x97\xff\x00", "the session key file is not text; it holds 'KEY_ID BASE64_KEY' lines"),
    ],
)  # fmt: skip
def test_bad_session_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    keys = tmp_path / "session-keys"
    if content is not None:
        keys.write_bytes(content)
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG.format(keys=keys))
    assert main(["gateway", "serve", str(config)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert f"{keys}: {message}" in err
    assert "Errno" not in err and "codec" not in err


def test_a_directory_where_a_file_belongs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG.format(keys=tmp_path))
    assert main(["gateway", "serve", str(config)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert str(tmp_path) in err
    assert "Errno" not in err and "Traceback" not in err


def test_a_port_already_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the dev CA is written to ./.overcast/gateway-tls
    keys = tmp_path / "session-keys"
    assert main(["gateway", "new-session-key"]) == exitcodes.OK
    keys.write_text(capsys.readouterr().out)
    with socket.socket() as taken, socket.socket() as spare:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spare.bind(("127.0.0.1", 0))  # a free port for metrics, released just below
        metrics_port = spare.getsockname()[1]
        spare.close()
        config = tmp_path / "overcast.yaml"
        config.write_text(
            CONFIG.format(keys=keys)
            .replace("192.0.2.1:8443", f"127.0.0.1:{port}")
            .replace("192.0.2.1:9464", f"127.0.0.1:{metrics_port}")
        )
        assert main(["gateway", "serve", str(config)]) == exitcodes.FAILURE
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
