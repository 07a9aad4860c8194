from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgp_guard.errors import InputError
from bgp_guard.rpki import Validity, Vrp, VrpSet, diff, load_vrps
from bgp_guard.update import Prefix

P = Prefix.parse


def test_rfc6811_states() -> None:
    vrps = VrpSet([Vrp(64500, P("192.0.2.0/24"), 25), Vrp(0, P("198.51.100.0/24"), 24)])
    assert vrps.validate(P("192.0.2.0/24"), 64500)[0] is Validity.VALID
    assert vrps.validate(P("192.0.2.128/25"), 64500)[0] is Validity.VALID
    assert vrps.validate(P("192.0.2.0/26"), 64500)[0] is Validity.INVALID  # too long
    assert vrps.validate(P("192.0.2.0/24"), 64501)[0] is Validity.INVALID
    assert vrps.validate(P("192.0.2.0/24"), frozenset({64500}))[0] is Validity.INVALID
    assert vrps.validate(P("192.0.0.0/16"), 64500)[0] is Validity.NOT_FOUND  # less specific
    # AS0 ROA (RFC 7607): covered, never valid
    assert vrps.validate(P("198.51.100.0/24"), 0)[0] is Validity.INVALID
    assert vrps.validate(P("2001:db8::/32"), 64500)[0] is Validity.NOT_FOUND


def test_rpki_client_routinator_and_csv(tmp_path: Path) -> None:
    rpki_client = tmp_path / "rpki-client.json"
    rpki_client.write_text(
        json.dumps(
            {
                "metadata": {"buildtime": "2026-11-26T00:00:00Z"},
                "roas": [
                    {"asn": 64500, "prefix": "192.0.2.0/24", "maxLength": 24, "ta": "ripe"},
                    {"asn": "AS64501", "prefix": "2001:db8::/32", "maxLength": 48, "ta": "x"},
                ],
            }
        )
    )
    csv = tmp_path / "vrps.csv"
    csv.write_text(
        "ASN,IP Prefix,Max Length,Trust Anchor\n"
        "AS64500,192.0.2.0/24,24,ripe\nAS64501,2001:db8::/32,48,x\n"
    )
    assert load_vrps(rpki_client).vrps == load_vrps(csv).vrps
    assert len(load_vrps(csv)) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ('{"vrps": []}', "no 'roas' list"),
        ('{"roas": [{"asn": 1, "prefix": "192.0.2.0/24", "maxLength": 16}]}', r"roas\[0\]"),
        ('{"roas": [{"asn": "x", "prefix": "192.0.2.0/24", "maxLength": 24}]}', r"roas\[0\]"),
        ("AS1,192.0.2.0/24\n", "line 2"),
    ],
)
def test_bad_vrp_files_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vrps"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_vrps(path)


def test_missing_file() -> None:
    with pytest.raises(InputError, match="cannot read VRP file"):
        load_vrps("/nonexistent/vrps.json")


def test_diff() -> None:
    a, b, c = (Vrp(64500, P("192.0.2.0/24"), 24), Vrp(64501, P("192.0.2.0/24"), 24),
               Vrp(64500, P("2001:db8::/32"), 32))  # fmt: skip
    changes = diff(VrpSet([a, c]), VrpSet([b, c]))
    assert [(ch.vrp, ch.added) for ch in changes] == [(a, False), (b, True)]
