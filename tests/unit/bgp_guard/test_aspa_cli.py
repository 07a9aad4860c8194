"""`overcast guard aspa-check`, and ASPA in `guard replay`, through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from overcast import exitcodes
from overcast.cli import main


def ris_live(tmp_path: Path, routes: list[tuple[str, list[int]]]) -> str:
    """A RIS-live JSON-lines file announcing each (prefix, path) from one peer."""
    lines = [
        json.dumps(
            {
                "type": "ris_message",
                "data": {
                    "timestamp": 1542057000 + i,
                    "peer": "198.51.100.1",
                    "peer_asn": str(path[0]),
                    "host": "rrc00",
                    "type": "UPDATE",
                    "path": path,
                    "announcements": [{"next_hop": "198.51.100.1", "prefixes": [prefix]}],
                },
            }
        )
        for i, (prefix, path) in enumerate(routes)
    ]
    out = tmp_path / "ris-live.json"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def config(tmp_path: Path, guard: dict[str, Any], aspas: list[dict[str, Any]] | None) -> str:
    if aspas is not None:
        (tmp_path / "rpki.json").write_text(json.dumps({"roas": [], "aspas": aspas}))
        guard = {**guard, "aspa": {**guard.get("aspa", {}), "file": "rpki.json"}}
    path = tmp_path / "overcast.yaml"
    path.write_text(json.dumps({"sites": {}, "guard": guard}))
    return str(path)


ROUTES = [
    ("192.0.2.0/24", [64510, 64501, 64500]),
    ("192.0.2.0/24", [64511, 64502, 64500, 64500]),
    ("198.51.100.0/24", [64503, 64500, 64505]),  # our customer AS64505's route, via AS64503
    ("203.0.113.0/24", [64504, 64503, 64506]),  # not through us
]
OURS = [
    {"customer_asid": 64500, "providers": [64501, 64509]},
    {"customer_asid": 64503, "providers": [64500]},  # AS64503 is our customer
]


def test_aspa_check_names_missing_and_stale_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path, {"own_asns": {64500: {}}}, OURS)
    data = ris_live(tmp_path, ROUTES)
    assert main(["guard", "aspa-check", "--config", conf, data]) == exitcodes.ALERT
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "AS64500: ASPA lists AS64501, AS64509"
    assert "missing: AS64502 heard AS64500's routes (1 updates, 1 prefixes) but is not in" in out
    assert "stale: AS64509 is in AS64500's ASPA but carried none" in out
    assert "AS64503 (customer (its ASPA names us), 1 updates)" in out
    assert main(["guard", "aspa-check", "--config", conf, data, "--json"]) == exitcodes.ALERT
    (report,) = json.loads(capsys.readouterr().out)
    assert report["published"] == [64501, 64509]
    assert [m["asn"] for m in report["missing"]] == [64502]
    assert [s["asn"] for s in report["stale"]] == [64509]
    assert report["ok"] is False


def test_aspa_check_all_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aspas = [{"customer_asid": 64500, "providers": [64501, 64502]}, OURS[1]]
    conf = config(tmp_path, {"own_asns": {64500: {}}}, aspas)
    assert main(["guard", "aspa-check", "--config", conf, ris_live(tmp_path, ROUTES)]) == 0
    assert "ok: the ASPA matches" in capsys.readouterr().out


def test_aspa_check_without_a_published_aspa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path, {"own_asns": {64500: {}}}, [OURS[1]])
    assert main(["guard", "aspa-check", "--config", conf, ris_live(tmp_path, ROUTES)]) == 3
    out = capsys.readouterr().out
    assert "AS64500: publishes no ASPA" in out
    assert "AS64500 publishes no ASPA: its paths verify Unknown at best" in out


@pytest.mark.parametrize(
    ("guard", "aspas", "message"),
    [
        ({}, OURS, "guard.own_asns is empty"),
        ({"own_asns": {64500: {}}}, None, "guard.aspa.file is not set"),
        ({"own_asns": {64500: {}}}, [{"customer_asid": "x", "providers": []}], "guard.aspa.file"),
    ],
)
def test_aspa_check_bad_input_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    guard: dict[str, Any],
    aspas: list[dict[str, Any]] | None,
    message: str,
) -> None:
    conf = config(tmp_path, guard, aspas)
    assert main(["guard", "aspa-check", "--config", conf, ris_live(tmp_path, ROUTES)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_aspa_check_of_a_file_without_bgp_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path, {"own_asns": {64500: {}}}, OURS)
    junk = tmp_path / "junk.mrt"
    junk.write_bytes(b"\x00" * 40)
    assert main(["guard", "aspa-check", "--config", conf, str(junk)]) == exitcodes.USAGE
    assert "no BGP data could be read" in capsys.readouterr().err


def test_replay_flags_the_mainone_leak_from_aspa_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aspas = [
        {"customer_asid": 15169, "providers": [0]},
        {"customer_asid": 4809, "providers": [4134]},
    ]
    conf = config(tmp_path, {"prefixes": {"192.0.2.0/24": {"origins": [15169]}}}, aspas)
    data = ris_live(tmp_path, [("192.0.2.0/24", [4809, 37282, 15169])])
    assert main(["guard", "replay", "--config", conf, data, "--json"]) == exitcodes.ALERT
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (event["type"], event["offending_as"]) == ("aspa-invalid", 37282)
    assert "AS37282 is not an attested provider of AS15169" in event["rationale"]
