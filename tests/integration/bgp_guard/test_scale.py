"""Scale-out on a real nats-server (JetStream): two `guard worker` processes share the
shards; one is killed (SIGKILL) while the stream is being decided; the other takes its
shards over and replays them. Every alert a single guard would raise on the same data is
in the alerts stream exactly once: none lost, none duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from bgp_guard.engine import Guard
from bgp_guard.monitored import entries, index
from bgp_guard.replay import merged
from bgp_guard.scale import ALERTS, BUCKET, SHARDS, alert_id, jetstream, shard_of
from bgp_guard.update import PeerDown, Update
from tests.conftest import require_binaries, shared_data
from tests.integration.bgp_guard.sinkparts import REPO, free_port, wait_for
from tests.unit.bgp_guard.helpers import guard_config

pytestmark = pytest.mark.timeout(240)

DATA = "ris-updates.20160811.1600.gz"


def config_for(path: Path) -> dict[str, Any]:
    """The first 300 announced prefixes, each with the first origin seen: most routes are
    legitimate, origin changes and more-specifics raise alerts."""
    origins: dict[str, int] = {}
    for item in merged([str(path)])[0]:
        if isinstance(item, Update) and item.announce and isinstance(item.origin, int):
            origins.setdefault(str(item.prefix), item.origin)
            if len(origins) == 300:
                break
    return {"prefixes": {p: {"origins": [a]} for p, a in origins.items()}}


def expected_alerts(path: Path, section: dict[str, Any]) -> tuple[set[str], int]:
    """What one Guard per shard raises on the shard's own updates, as a worker sees them,
    and how many updates the shards get in all."""
    config = guard_config(section)
    monitored = index(entries(config))
    guards = [Guard(config) for _ in range(SHARDS)]
    ids: set[str] = set()
    decided = 0
    for item in merged([str(path)])[0]:
        if type(item) is PeerDown:
            shards = range(SHARDS)
        else:
            assert isinstance(item, Update)
            found = monitored.longest(item.prefix)
            if found is None:
                continue
            shards = range(shard_of(found[1][0].name), shard_of(found[1][0].name) + 1)
        for shard in shards:
            decided += 1
            ids.update(alert_id(e) for e in guards[shard].process(item))
    return ids, decided


async def stream_state(url: str) -> tuple[list[str], dict[str, Any]]:
    """The alerts' ids in the stream, and the shard bucket (holders, worker progress)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            total = (await js.stream_info(ALERTS)).state.messages
            kv = await js.key_value(BUCKET)
        except NotFoundError:  # no worker made them yet
            return [], {}
        ids = []
        if total:
            sub = await js.subscribe(
                "bgp.alerts", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            for _ in range(total):
                msg = await sub.next_msg(timeout=5)
                ids.append(alert_id(orjson.loads(msg.data)))
            await sub.unsubscribe()
        bucket: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # an empty bucket has no keys
            for key in await kv.keys():
                entry = await kv.get(key)
                if entry.value:
                    bucket[key] = orjson.loads(entry.value)
        return ids, bucket
    finally:
        await nc.close()


def state(url: str) -> tuple[list[str], dict[str, Any]]:
    return asyncio.run(stream_state(url))


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def settled_progress(url: str) -> int:
    """a's count of updates decided, once it stopped growing between two looks."""
    done = int(state(url)[1].get("worker-a", {}).get("done", -1))
    time.sleep(1.2)  # a reports once a second
    again = int(state(url)[1].get("worker-a", {}).get("done", -2))
    return again if again == done else 0


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def holders(bucket: dict[str, Any]) -> dict[str, int]:
    count: dict[str, int] = {}
    for key, value in bucket.items():
        if key.isdigit():
            count[value[0]] = count.get(value[0], 0) + 1
    return count


def test_two_workers_one_killed_every_alert_once(tmp_path: Path) -> None:
    require_binaries("nats-server")
    data = shared_data("bgp") / DATA
    section = config_for(data)
    expected, decided = expected_alerts(data, section)
    assert len(expected) > 50
    config = tmp_path / "overcast.yaml"
    config.write_text(orjson.dumps({"sites": {}, "guard": section}).decode())
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")]
    with process(server, tmp_path / "nats.log"):
        wait_for(lambda: listening(port), 20, "nats-server to listen")
        worker = [
            sys.executable,
            "-m",
            "overcast",
            "-v",
            "guard",
            "worker",
            "--config",
            str(config),
            "--nats",
            url,
            "--name",
        ]
        with (
            process([*worker, "a"], tmp_path / "a.log"),
            process([*worker, "b"], tmp_path / "b.log") as b,
        ):
            wait_for(lambda: holders(state(url)[1]) == {"a": 8, "b": 8}, 60, "an even share")
            items = list(merged([str(data)])[0])
            half = len(items) // 2
            asyncio.run(jetstream.publish(url, guard_config(section), items[:half]))
            # b is killed while its shards have work left: the second half comes after.
            wait_for(lambda: state(url)[1].get("worker-b", {}).get("done", 0) > 0, 60, "b at work")
            b.kill()
            asyncio.run(jetstream.publish(url, guard_config(section), items[half:]))
            wait_for(lambda: holders(state(url)[1]) == {"a": SHARDS}, 60, "a to take b's shards")
            wait_for(lambda: set(state(url)[0]) == expected, 90, "every expected alert")
            settled = wait_for(lambda: settled_progress(url), 60, "a to finish replaying")
            ids = state(url)[0]
    assert len(ids) == len(set(ids)) == len(expected)  # once each
    # a decided all 16 shards to their end: its own, and b's replayed from the start.
    assert settled >= decided, (settled, decided)
    a_log = (tmp_path / "a.log").read_text()
    assert "Traceback" not in a_log, a_log
