"""Two gateway processes sharing session state through a real redis-server.

A logout that reaches one gateway (the IdP's back channel, or the user's sign-out) must end
the session at the other; oversized sessions stored by one must open at the other; a
process that starts later must learn every revocation made before it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.session import COOKIE, Session, SessionStore
from gateway.session_sync import SessionSync
from tests.conftest import require_binaries
from tests.integration.gateway.sso_peers import (
    APP_HOST,
    RunningGateway,
    cli_gateway,
    confirm_idp_logout,
    free_port,
    gateway_config,
    gateway_in_thread,
    identity_provider,
    loopback_socket,
    sign_in,
    until,
    upstream_app,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binaries("redis-server")
    tmp = tmp_path_factory.mktemp("redis")
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: sock.exists() or proc.poll() is not None, 20, "redis-server's socket")
        assert proc.poll() is None, "redis-server exited"
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    tmp = tmp_path_factory.mktemp("pair")
    keys = tmp / "session-keys"
    keys.write_text(f"k1 {base64.b64encode(os.urandom(32)).decode()}\n")
    sock_a, sock_b = loopback_socket(), loopback_socket()
    port_a, port_b = sock_a.getsockname()[1], sock_b.getsockname()[1]
    shared: dict[str, Any] = {"session_keys_file": str(keys), "session_store": redis_url}
    with (
        identity_provider(tmp, port_a, more_ports=(port_b,)) as issuer,
        upstream_app(tmp) as upstream,
        gateway_in_thread(gateway_config(tmp, issuer, port_a, upstream, **shared), sock_a) as a,
        gateway_in_thread(gateway_config(tmp, issuer, port_b, upstream, **shared), sock_b) as b,
    ):
        yield a, b


def status(gw: RunningGateway, cookie: str) -> int:
    headers = {"cookie": f"{COOKIE}={cookie}"}
    return httpx.get(gw.url(APP_HOST, "/"), headers=headers, verify=gw.trust()).status_code


def test_backchannel_logout_at_one_gateway_ends_the_session_at_the_other(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    with b.client() as client:
        sign_in(client, b.url(APP_HOST, "/"), "alice")
        cookie = client.cookies.get(COOKIE)
        assert cookie and status(b, cookie) == 200 and status(a, cookie) == 200
        # Signing out at the IdP: its back channel only reaches gateway A.
        confirm = client.get(f"{a.gateway.rp.issuer}/session/end", follow_redirects=True)
        confirm_idp_logout(client, confirm)
    until(lambda: status(b, cookie) == 302, 10, "gateway B to hear A's back-channel logout")
    assert status(a, cookie) == 302


def test_sign_out_at_one_gateway_ends_the_session_at_the_other(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    with a.client() as client:
        sign_in(client, a.url(APP_HOST, "/"), "alice")
        cookie = client.cookies.get(COOKIE)
        assert cookie and status(b, cookie) == 200
        client.get(b.url(APP_HOST, "/.overcast/logout"))
    until(lambda: status(a, cookie) == 302, 10, "gateway A to hear B's sign-out")


def test_oversized_session_stored_by_one_opens_at_the_other(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    now = int(time.time())
    # Big enough for the server-side store (> 4 KB sealed), small enough that the assertion
    # carrying every group still fits the upstream's 8 KB header limit.
    groups = [f"group-{i:04d}" for i in range(300)] + ["sales"]
    big = Session("big1", "alice", {"sub": "alice", "groups": groups}, now, now + 600, now + 600)
    cookie = a.gateway.codec.seal(big)
    assert len(cookie) < 300  # a reference, the session itself is server-side
    until(lambda: status(b, cookie) == 200, 10, "gateway B to receive the stored session")


def test_a_late_process_replays_every_revocation(
    pair: tuple[RunningGateway, RunningGateway], redis_url: str
) -> None:
    a, _ = pair
    now = int(time.time())
    doomed = Session("late1", "mallory", {}, now, now + 600, now + 600)

    async def replay() -> bool:
        a.gateway.codec.store.revoke(sid="late1", now=now)  # published by A's sync
        store = SessionStore()
        sync = SessionSync(redis_url, store)
        task = asyncio.create_task(sync.run())
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and store.alive(doomed, now + 1):
                await asyncio.sleep(0.05)
            return sync.synced and not store.alive(doomed, now + 1)
        finally:
            task.cancel()

    # A's store is used from A's own event loop: publish from there, then replay here.
    assert asyncio.run(replay())


def test_ready_reflects_the_shared_store(pair: tuple[RunningGateway, RunningGateway]) -> None:
    for gw in pair:
        assert gw.gateway.sync is not None and gw.gateway.sync.synced
        assert httpx.get(gw.url("127.0.0.1", "/ready"), verify=gw.trust()).status_code == 200


def test_cli_with_two_workers_shares_sessions_and_metrics(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    with (
        identity_provider(tmp_path, port) as issuer,
        upstream_app(tmp_path) as upstream,
        cli_gateway(tmp_path, issuer, port, upstream, workers=2, session_store=redis_url) as gw,
        httpx.Client(verify=gw.trust(), timeout=20) as client,
    ):
        app = f"https://{APP_HOST}:{port}/"
        assert sign_in(client, app, "alice").status_code == 200
        # Many connections, so both workers answer: the cookie opens in each.
        for _ in range(10):
            with httpx.Client(verify=gw.trust(), cookies=client.cookies) as fresh:
                assert fresh.get(app).status_code == 200
        confirm = client.get(f"{issuer}/session/end", follow_redirects=True)
        confirm_idp_logout(client, confirm)
        cookie = client.cookies.get(COOKIE)
        assert cookie

        def everywhere_signed_out() -> bool:
            # Fresh connections land on either worker; all must refuse the session.
            return all(
                httpx.get(
                    app, headers={"cookie": f"{COOKIE}={cookie}"}, verify=gw.trust()
                ).status_code
                == 302
                for _ in range(10)
            )

        until(everywhere_signed_out, 10, "both workers to drop the session")
        metrics = httpx.get(f"http://127.0.0.1:{gw.metrics_port}/metrics").text
        # Counted across both worker processes.
        assert 'overcast_gateway_logins_total{result="ok"} 1.0' in metrics
        assert 'overcast_gateway_backchannel_logouts_total{result="ok"} 1.0' in metrics


def test_bad_store_url_names_the_fix(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.config import GatewayConfig

    with pytest.raises(ValidationError, match="not a Redis URL"):
        GatewayConfig.model_validate({"issuer": "https://idp.example", "session_store": "x"})
