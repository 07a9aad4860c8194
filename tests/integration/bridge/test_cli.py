"""`overcast bridge up|status|down` against real namespaces and wireguard-go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overcast import exitcodes
from overcast.cli import main
from tests.integration.bridge.sites import CONFIG, Lab, eventually, links

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def test_up_status_down(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    lab.keys.ensure_all(lab.config.sites)

    def bridge(command: str, site: str, *extra: str) -> int:
        common = ["--site", site, "--keys", str(lab.keys.directory), "--prefix", lab.prefix]
        where = ["--netns", lab.netns[site]]
        if command != "status":
            where += ["--run-dir", str(lab.run_dir)]
        return main(["bridge", command, str(config), *common, *where, *extra])

    for site in lab.netns:
        assert bridge("up", site, "--json") == exitcodes.OK
        up = json.loads(capsys.readouterr().out)
        assert up["changes"] and up["links"][0] in links(lab.netns[site])

    def all_peers_up() -> bool:
        code = bridge("status", "hq", "--json")
        capsys.readouterr()
        return code == exitcodes.OK

    # Persistent keepalives start the handshakes without any traffic.
    eventually("every peer of hq to handshake", all_peers_up)
    assert bridge("status", "hq") == exitcodes.OK
    text = capsys.readouterr().out
    assert "branch" in text and "cloud" in text and "s ago" in text

    assert bridge("up", "hq") == exitcodes.OK
    assert "nothing to change" in capsys.readouterr().out

    for site in lab.netns:
        assert bridge("down", site) == exitcodes.OK
        assert "deleted" in capsys.readouterr().out
    assert bridge("status", "hq", "--json") == exitcodes.FAILURE
    gone = json.loads(capsys.readouterr().out)["peers"]
    assert [(p["backend"], p["configured"], p["up"]) for p in gone] == [(None, False, False)] * 2
    assert bridge("down", "hq") == exitcodes.OK
    assert "nothing to remove" in capsys.readouterr().out
