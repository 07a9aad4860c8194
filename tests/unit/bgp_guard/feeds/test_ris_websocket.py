"""RIS-live websocket client, pure parts: what it subscribes to, its reconnect delays, its
config and its command-line flag. The client against a websocket server on loopback is in
tests/integration/bgp_guard/test_ris_websocket.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydantic import ValidationError

from bgp_guard.config import RisLiveWebsocket
from bgp_guard.feeds import RIS_LIVE_URL
from bgp_guard.feeds.ris_websocket import reconnect_delays, subscriptions
from overcast import exitcodes
from overcast.cli import main

from ..helpers import guard_config

NO_RAW = {"socketOptions": {"includeRaw": False}}
PEER_STATE = {"type": "RIS_PEER_STATE", **NO_RAW}


def prefix(text: str, more: bool = True) -> dict[str, object]:
    return {"type": "UPDATE", "prefix": text, "moreSpecific": more, "lessSpecific": False, **NO_RAW}


def test_subscriptions_cover_prefixes_their_more_specifics_and_our_asns() -> None:
    config = guard_config(
        {
            "prefixes": {
                "192.0.2.0/24": {"origins": [64500]},
                "192.0.2.128/25": {"origins": [64500]},  # inside the /24: no filter of its own
                "192.0.2.192/26": {"ignore": True},  # a carve-out: nothing to subscribe
                "198.51.100.0/24": {"origins": [64500], "ignore_more_specifics": True},
                "198.51.100.0/25": {"origins": [64501]},  # its parent takes no more-specifics
                "2001:db8::/32": {"announced": False},
            },
            "own_asns": {64500: {"upstreams": [64501]}},
        }
    )
    assert subscriptions(config) == [
        prefix("192.0.2.0/24"),
        prefix("198.51.100.0/24", more=False),
        prefix("198.51.100.0/25"),
        prefix("2001:db8::/32"),
        {"type": "UPDATE", "path": "64500", **NO_RAW},
        PEER_STATE,
    ]


def test_leaks_everywhere_need_every_update() -> None:
    config = guard_config(
        {
            "prefixes": {"192.0.2.0/24": {"origins": [64500]}},
            "asrel_file": "as-rel.txt",
            "leak_scope": "all",
        }
    )
    assert subscriptions(config) == [{"type": "UPDATE", **NO_RAW}, PEER_STATE]


def test_reconnect_delays_double_with_jitter_up_to_the_cap() -> None:
    assert list(itertools.islice(reconnect_delays(1, 8, rng=lambda: 0.0), 6)) == [
        0.5,
        1,
        2,
        4,
        4,
        4,
    ]
    assert list(itertools.islice(reconnect_delays(1, 8, rng=lambda: 1.0), 5)) == [1, 2, 4, 8, 8]
    for delay, cap in zip(reconnect_delays(1, 8), [1, 2, 4, 8, 8, 8], strict=False):
        assert cap / 2 <= delay <= cap


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "https://ris-live.ripe.net/v1/ws/"}, "is not a websocket URL; write it like"),
        ({"url": "ws://[::1/"}, "is not a websocket URL"),
        ({"reconnect_min": 10, "reconnect_max": 5}, "reconnect_min is above reconnect_max"),
        ({"ping_interval": 0}, "greater than 0"),
    ],
)
def test_bad_settings_name_the_fix(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[")):
        RisLiveWebsocket.model_validate(settings)
    assert (
        RisLiveWebsocket().url == RIS_LIVE_URL == "wss://ris-live.ripe.net/v1/ws/?client=overcast"
    )


def test_watch_refuses_a_bad_ris_live_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard: {prefixes: {192.0.2.0/24: {origins: [64500]}}}\n")
    code = main(["guard", "watch", "--config", str(config), "--ris-live", "http://example/"])
    assert code == exitcodes.USAGE
    assert "--ris-live: 'http://example/' is not a websocket URL" in capsys.readouterr().err


def test_watch_without_any_feed_names_the_ris_live_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text("sites: {}\nguard: {prefixes: {192.0.2.0/24: {origins: [64500]}}}\n")
    assert main(["guard", "watch", "--config", str(config)]) == exitcodes.USAGE
    assert "guard.feeds.ris_live (RIPE RIS-live), or give --ris-live" in capsys.readouterr().err


def test_the_flag_keeps_the_settings_of_the_config_section() -> None:
    from bgp_guard.cli import _with_ris_live
    from bgp_guard.config import Feeds

    feeds = Feeds.model_validate({"ris_live": {"ping_interval": 5, "reconnect_max": 30}})
    url = "ws://127.0.0.1:8080/v1/ws/?client=noc"
    assert _with_ris_live(feeds, url).ris_live == RisLiveWebsocket(
        url=url, ping_interval=5, reconnect_max=30
    )
    assert _with_ris_live(Feeds(), url).ris_live == RisLiveWebsocket(url=url)


def test_validate_names_a_bad_ris_live_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "overcast.yaml"
    config.write_text(
        "sites: {}\nguard:\n  prefixes: {192.0.2.0/24: {origins: [64500]}}\n"
        "  feeds: {ris_live: {url: 'ris-live.ripe.net', reconnect_min: 0}}\n"
    )
    assert main(["validate", str(config)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "guard.feeds.ris_live.url: 'ris-live.ripe.net' is not a websocket URL" in err
    assert "guard.feeds.ris_live.reconnect_min" in err
