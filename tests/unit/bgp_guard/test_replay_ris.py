"""End to end: the real RIS file through `overcast guard replay`, with a config
(replay_ris/overcast.yaml) written so that known announcements in it are flagged."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bgp_guard import replay
from overcast import exitcodes
from overcast.cli import main
from tests.conftest import shared_data

CONFIG = Path(__file__).parent / "replay_ris" / "overcast.yaml"


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    code = _run(["--json", str(shared_data("bgp") / "ris-updates.20160811.1600.gz")], out)
    assert code == exitcodes.ALERT
    return out


def _run(args: list[str], out: list[dict[str, Any]]) -> int:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["guard", "replay", "--config", str(CONFIG), *args])
    out += [json.loads(line) for line in buffer.getvalue().splitlines()]
    return code


def states(events: list[dict[str, Any]], kind: str, prefix: str | None, asn: int) -> list[str]:
    return [
        e["state"]
        for e in events
        if (e["type"], e["prefix"], e["offending_as"]) == (kind, prefix, asn)
    ]


@pytest.mark.parametrize(
    ("kind", "prefix", "asn", "expected"),
    [
        # AS58678's announcements start at 16:00:06 and are all replaced by 16:00:26
        ("exact-origin", "202.134.167.0/24", 58678, ["ongoing", "withdrawn", "resolved"]),
        ("exact-upstream", "202.134.159.0/24", 9498, ["ongoing", "withdrawn", "resolved"]),
        ("rpki-invalid", "202.134.152.0/24", 58678, ["ongoing", "withdrawn", "resolved"]),
        ("subprefix-origin", "72.249.118.0/23", 63410, ["ongoing"]),
        ("subprefix-origin", "72.249.45.0/24", 55045, ["ongoing"]),
        ("too-specific", "72.249.63.0/24", 30496, ["ongoing"]),
        ("squat", "88.216.48.0/21", 51388, ["ongoing"]),
        ("path-match", "200.12.26.0/24", None, ["ongoing"]),
        ("route-leak", "200.12.26.0/24", 12956, ["ongoing"]),
        ("new-upstream", None, 174, ["ongoing"]),
    ],
)
def test_known_announcements_are_flagged(
    events: list[dict[str, Any]], kind: str, prefix: str, asn: int, expected: list[str]
) -> None:
    assert states(events, kind, prefix, asn) == expected


def test_event_details(events: list[dict[str, Any]]) -> None:
    (hijack,) = [e for e in events if e["type"] == "exact-origin" and e["state"] == "ongoing"]
    assert hijack["artemis"] == "E|0|-|-"
    assert hijack["rationale"] == (
        "AS58678 originates 202.134.167.0/24 which only AS18196 may originate."
    )
    assert hijack["peer_count"] == 2  # min_peers: fires at the second peer
    assert hijack["example_path"][-2:] == [9498, 58678]
    withdrawn = next(e for e in events if e["type"] == "exact-origin" and e["state"] == "withdrawn")
    assert withdrawn["peer_count"] == 6
    assert withdrawn["time"] - hijack["time"] < 60
    leak = next(e for e in events if e["type"] == "route-leak")
    assert "AS12956 learned the route from its peer AS7004" in leak["rationale"]


def test_visibility_loss_and_return(events: list[dict[str, Any]]) -> None:
    loss = [e for e in events if e["type"] == "visibility-loss"]
    assert [e["state"] for e in loss][:2] == ["ongoing", "resolved"]
    assert loss[0]["rationale"].startswith("195.128.159.0/24 was withdrawn by 10 of the")
    assert "visible again" in loss[1]["rationale"]


def test_ignored_more_specifics_and_order(events: list[dict[str, Any]]) -> None:
    assert not [e for e in events if (e["prefix"] or "").startswith("78.111.218.")]
    times = [e["time"] for e in events]
    assert times == sorted(times)


def test_two_collectors_merge_in_time_order() -> None:
    data = shared_data("bgp")
    stream, stats = replay.merged(
        [str(data / "ris-rrc06.updates.1427846400.gz"),
         str(data / "routeviews-jinx.updates.1427846400.bz2")]
    )  # fmt: skip
    times = [u.time for u in stream]
    assert times == sorted(times)
    assert len(times) == sum(s.updates for s in stats) > 10_000


def test_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["/nonexistent/updates.gz"], []) == exitcodes.USAGE
    assert "No such file" in capsys.readouterr().err


def test_ris_live_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The RIS-live sample: one UPDATE (45.161.192.0/23 from AS268481), a peer-state
    message, a server error and a broken line; the bad lines are counted, not fatal."""
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard:\n  prefixes: {45.161.192.0/22: {origins: [64500]}}\n")
    stream = shared_data("bgp") / "ris-live-stream.json"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["guard", "replay", "--config", str(config), "--json", str(stream)])
    assert code == exitcodes.ALERT
    (event,) = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert (event["type"], event["prefix"], event["offending_as"]) == (
        "subprefix-origin",
        "45.161.192.0/23",
        268481,
    )
    err = capsys.readouterr().err
    assert "7 records from 1 file(s)" in err and "2 bad record(s)" in err


def test_ris_live_lines_about_nothing_watched_are_skipped_unread_with_the_same_events() -> None:
    """The real RIS file as RIS-live lines, through the guard with and without the feed's
    prefix filter (`Guard.wanted`): the same events, most lines never decoded."""
    from bgp_guard.engine import Guard
    from bgp_guard.feeds.mrt import MrtFeed
    from bgp_guard.feeds.ris_live import RisLiveFeed
    from tests.unit.bgp_guard.helpers import guard_config, ris_live_messages

    messages, _ = ris_live_messages(
        MrtFeed(shared_data("bgp") / "ris-updates.20160811.1600.gz"), 8000
    )
    lines = [json.dumps(m).encode() for m in messages]
    # The replay_ris prefixes, without own ASNs and AS relationships: those make every
    # route matter, and the guard then asks for no filter.
    config = guard_config(
        {
            "min_peers": 2,
            "prefixes": {
                "202.134.167.0/24": {"origins": [18196], "upstreams": [4755]},
                "72.249.0.0/17": {"origins": [30496]},
                "88.216.48.0/21": {"announced": False},
                "195.128.159.0/24": {"origins": [56636]},
            },
        }
    )

    def run(filtered: bool) -> tuple[list[tuple[Any, ...]], RisLiveFeed]:
        guard = Guard(config)
        feed = RisLiveFeed(lines, wanted=guard.wanted() if filtered else None)
        events = [e for item in feed for e in guard.process(item)] + guard.finish(2e9)
        return [(e["type"], e["state"], e["prefix"], e.get("offending_as")) for e in events], feed

    plain, everything = run(False)
    fast, filtered = run(True)
    assert fast == plain and len(plain) > 3
    assert everything.stats.skipped == 0
    assert filtered.stats.skipped > len(lines) * 0.9
    assert filtered.stats.records == everything.stats.records == len(lines)
