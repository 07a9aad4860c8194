"""The notice decisions against a real state file: dedup by key across a restart, min
duration, repeats, ack and silence, closing what did not come back after a restart; and
the JSON-lines file sink's rotation and the retry backoff."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.engine import Guard
from bgp_guard.notify import Notifier
from bgp_guard.sinks import notice
from bgp_guard.sinks.config import Notify, Retry
from bgp_guard.sinks.jsonl import JsonLinesFile
from bgp_guard.sinks.outbox import backoff
from bgp_guard.sinks.webhook import TemplateError, Webhook
from bgp_guard.state import Store

from .helpers import guard_config, update

PREFIXES = {"prefixes": {"203.0.113.0/24": {"origins": [64500]}}}


def hijack(guard: Guard, t: float, withdraw: bool = False) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"t": t, "prefix": "203.0.113.0/25"}
    spec.update({"withdraw": True} if withdraw else {"path": [64510, 64511]})
    return guard.process(update(spec))


def queued(store: Store) -> list[tuple[str, str]]:
    return [(d["sink"], d["notice"]) for d in store.deliveries()]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.sqlite")


def test_open_close_and_no_repeat_across_a_restart(store: Store) -> None:
    notifier = Notifier(store, ["a", "b"], Notify(repeat_every=0), 0)
    notifier.handle(hijack(Guard(guard_config(PREFIXES)), 10), 10)
    assert queued(store) == [("a", "open"), ("b", "open")]
    # A restart: a new engine learns the same route again and says "ongoing" again.
    guard = Guard(guard_config(PREFIXES))
    notifier = Notifier(store, ["a", "b"], Notify(repeat_every=0), 50)
    notifier.handle(hijack(guard, 60), 60)
    assert len(queued(store)) == 2
    notifier.handle(hijack(guard, 70, withdraw=True), 70)
    assert queued(store)[2:] == [("a", "close"), ("b", "close")]
    closing = store.next_delivery("a")
    assert closing is not None and closing.notice == "open"  # in order: open first
    (event,) = store.events()
    assert not event.open and event.state == "withdrawn"


def test_min_duration_hides_flaps_and_delays_the_open(store: Store) -> None:
    notifier = Notifier(store, ["a"], Notify(min_duration=30, repeat_every=0), 0)
    guard = Guard(guard_config(PREFIXES))
    notifier.handle(hijack(guard, 10), 10)
    notifier.handle(hijack(guard, 20, withdraw=True), 20)
    notifier.tick(45)
    assert queued(store) == []  # a 10 s flap: nobody told
    notifier.handle(hijack(guard, 50), 50)
    notifier.tick(70)
    assert queued(store) == []
    notifier.tick(80)
    assert queued(store) == [("a", "open")]


def test_repeats_until_acknowledged_and_silence_quiets_everything(store: Store) -> None:
    notifier = Notifier(store, ["a"], Notify(repeat_every=100), 0)
    guard = Guard(guard_config(PREFIXES))
    notifier.handle(hijack(guard, 10), 10)
    notifier.tick(50)
    notifier.tick(110)
    assert queued(store) == [("a", "open"), ("a", "repeat")]
    (event,) = store.events()
    store.ack(event.key, "alice", "on it", 120)
    notifier.operator("ack", event, 120)
    notifier.tick(500)
    assert queued(store)[2:] == [("a", "ack")]
    store.silence(event.key, 1000)
    notifier.operator("silence", event, 500)
    notifier.handle(hijack(guard, 600, withdraw=True), 600)  # silenced: no close
    assert queued(store)[3:] == [("a", "silence")]
    notifier.handle(hijack(guard, 1100), 1100)  # silence over; a new open needs a new ack
    assert queued(store)[4:] == [("a", "open")]
    (event,) = store.events()
    assert event.acked_by is None


def test_events_that_ended_while_the_guard_was_down_are_closed_after_the_grace(
    store: Store,
) -> None:
    Notifier(store, ["a"], Notify(repeat_every=0), 0).handle(
        hijack(Guard(guard_config(PREFIXES)), 10), 10
    )
    notifier = Notifier(store, ["a"], Notify(repeat_every=0, restart_grace=60), 100)
    notifier.tick(150)
    assert queued(store) == [("a", "open")]
    notifier.tick(161)
    assert queued(store) == [("a", "open"), ("a", "close")]
    (event,) = store.events()
    assert "within 60 s of the guard's restart" in event.event["rationale"]


def test_close_words() -> None:
    event = {"type": "visibility-loss", "state": "resolved", "prefix": "192.0.2.0/24"}
    assert notice.headline("close", event) == "VISIBLE AGAIN: visibility-loss 192.0.2.0/24"
    assert notice.label("close", {"type": "feed-down", "state": "resolved"}) == "recovered"
    assert notice.label("close", {"type": "exact-origin", "state": "resolved"}) == "resolved"


def test_jsonl_file_rotates_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "guard.jsonl"
    sink = JsonLinesFile(str(path), max_bytes=1024, keep=2)

    async def write() -> None:
        for n in range(10):
            await sink.send({"pad": "x" * 300, "n": n})
        await sink.close()

    asyncio.run(write())
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert not Path(f"{path}.3").exists()
    kept = [json.loads(x)["n"] for f in reversed(files) for x in f.read_text().splitlines()]
    assert kept == list(range(10 - len(kept), 10))  # newest kept, whole lines, in order
    assert all(f.stat().st_size <= 1024 for f in files)


def test_jsonl_file_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "guard.jsonl"
    sink = JsonLinesFile(str(path))

    async def write() -> None:
        await sink.send({"n": 1})
        path.rename(tmp_path / "guard.jsonl.old")  # logrotate moved it away
        await sink.send({"n": 2})
        await sink.close()

    asyncio.run(write())
    assert json.loads(path.read_text()) == {"n": 2}


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    retry = Retry(min=1, max=60)
    assert [backoff(n, retry, lambda: 1.0) for n in (1, 2, 3, 8)] == [1, 2, 4, 60]
    assert [backoff(n, retry, lambda: 0.0) for n in (1, 2, 3, 8)] == [0.5, 1, 2, 30]


def test_webhook_templates_render_json_and_a_bad_one_is_named(tmp_path: Path) -> None:
    for name in ("slack", "teams", "mattermost", "generic"):
        Webhook("http://127.0.0.1:9/", name)  # renders the sample notice or raises
    (tmp_path / "mine.j2").write_text('{"text": {{ notice.headline }}}')  # unquoted
    with pytest.raises(TemplateError, match=r"does not render JSON.*`json` filter"):
        Webhook("http://127.0.0.1:9/", "mine.j2", config_dir=tmp_path)
    with pytest.raises(TemplateError, match="no webhook template 'slak'"):
        Webhook("http://127.0.0.1:9/", "slak")


ACK_CONFIG = """
sites: {}
guard:
  prefixes: {203.0.113.0/24: {origins: [64500]}}
  sinks:
    log: {type: jsonl, path: guard.jsonl}
    hook: {type: webhook, url: "http://127.0.0.1:9/", template: slack}
"""


def test_guard_ack_silence_and_events_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from overcast import exitcodes
    from overcast.cli import main

    config = tmp_path / "overcast.yaml"
    config.write_text(ACK_CONFIG)
    store = Store(tmp_path / "guard-state.sqlite")
    notifier = Notifier(store, ["log", "hook"], Notify(repeat_every=0), 0)
    notifier.handle(hijack(Guard(guard_config(PREFIXES)), 10), 10)
    key = store.events()[0].key
    assert main(["guard", "events", "--config", str(config)]) == exitcodes.ALERT
    assert f"OPEN   {key}" in capsys.readouterr().out
    args = ["guard", "ack", "--config", str(config), "203.0.113.0/25", "--by", "alice"]
    assert main([*args, "--note", "calling AS64511"]) == exitcodes.OK
    assert "acknowledged; 2 sink(s) will say so" in capsys.readouterr().out
    silence = ["guard", "silence", "--config", str(config), "subprefix", "--for", "2h"]
    assert main([*silence, "--json"]) == exitcodes.OK
    assert json.loads(capsys.readouterr().out)["silenced_until"] > 7000
    assert [n for _, n in queued(store)] == ["open", "open", "ack", "ack", "silence", "silence"]
    ack = next(d for d in store.deliveries() if d["notice"] == "ack")
    assert ack["sink"] == "log"
    assert main(["guard", "ack", "--config", str(config), "198.51.100", "--by", "x"]) == 2
    assert "no event matches '198.51.100'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        main([*silence[:-1], "soon"])
    assert "'soon' is not a duration" in capsys.readouterr().err
