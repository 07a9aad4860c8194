"""Real peers for the sign-in tests, all on loopback: the IdP, an upstream app, the gateway.

- IdP: npm `oidc-provider` (OpenID Certified) from tests/js/idp.mjs, over HTTPS with the
  test's dev CA, with users alice (sales), bob (eng) and eve (sales, email not verified).
- Upstream: an aiohttp HTTPS app answering every path with the headers it received.
- Gateway: the real `gateway.app` served by uvicorn (TLS, httptools) in a thread, with a
  clock the test can move forward.
Hosts: the gateway's own host is 127.0.0.1, the app "crm" is at localhost (both resolve
without DNS, and Chromium treats them as different sites).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from gateway import tls
from gateway.app import Gateway, build
from gateway.cli import server
from gateway.config import GatewayConfig
from lab import netns
from lab.idp import JS, NODE
from tests.conftest import require

CLIENT_ID = "overcast-gateway"
CLIENT_SECRET = "test-client-secret-0123456789"
GATEWAY_HOST = "127.0.0.1"
APP_HOST = "localhost"
USERS = {
    "alice": {
        "password": "alice-pw",
        "email": "alice@corp.example",
        "email_verified": True,
        "groups": ["sales"],
    },
    "bob": {
        "password": "bob-pw",
        "email": "bob@corp.example",
        "email_verified": True,
        "groups": ["eng"],
    },
    "eve": {
        "password": "eve-pw",
        "email": "eve@corp.example",
        "email_verified": False,
        "groups": ["sales"],
    },
}


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def loopback_socket() -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with loopback_socket() as sock:
        return int(sock.getsockname()[1])


def until(condition: Any, timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def require_js(package: str) -> None:
    """Skip (fail in CI) unless tests/js has its Node runtime and `package` installed."""
    missing = [
        str(p.relative_to(JS)) for p in (NODE, JS / "node_modules" / package) if not p.exists()
    ]
    require(not missing, f"tests/js lacks {', '.join(missing)} (./dev test runs `npm ci` there)")


@contextmanager
def identity_provider(
    tmp: Path, gateway_port: int, access_ttl: int = 60, more_ports: tuple[int, ...] = ()
) -> Iterator[str]:
    """Run the IdP; yields its issuer URL. Its client is the gateway at `gateway_port`
    (which also gets the back-channel logouts) and at each of `more_ports`."""
    require_js("oidc-provider")
    files = tls.dev_ca(tmp / "ca", [GATEWAY_HOST, APP_HOST], now_utc())
    apps = [f"https://{APP_HOST}:{port}" for port in (gateway_port, *more_ports)]
    # The gateway's own host signs users in too: its portal and identity providers.
    apps.append(f"https://{GATEWAY_HOST}:{gateway_port}")
    config = {
        "cert": str(files.cert),
        "key": str(files.key),
        "host": "127.0.0.1",
        "access_ttl": access_ttl,
        "users": USERS,
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{app}/.overcast/callback" for app in apps],
                "post_logout_redirect_uris": [f"{app}/.overcast/signed-out" for app in apps],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
                "backchannel_logout_uri": (
                    f"https://{GATEWAY_HOST}:{gateway_port}/.overcast/backchannel-logout"
                ),
                "backchannel_logout_session_required": True,
            }
        ],
    }
    path = tmp / "idp.json"
    path.write_text(json.dumps(config))
    env = os.environ | {"NODE_EXTRA_CA_CERTS": str(files.ca)}
    proc = subprocess.Popen(
        [str(NODE), str(JS / "idp.mjs"), str(path)],
        stdout=subprocess.PIPE,
        stderr=open(tmp / "idp.log", "wb"),  # noqa: SIM115 - closed with the process
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else b""
        if not line:
            raise AssertionError(f"IdP did not start: {(tmp / 'idp.log').read_text()[-2000:]}")
        yield str(json.loads(line)["issuer"])
    finally:
        netns.stop([proc], 10)


@dataclass
class Upstream:
    port: int
    ca: Path


@contextmanager
def upstream_app(tmp: Path) -> Iterator[Upstream]:
    """An HTTPS app that answers every request with the headers it received (JSON); /ws echoes."""
    files = tls.dev_ca(tmp / "upstream-ca", ["127.0.0.1"], now_utc())
    assert files.ca is not None
    sock = loopback_socket()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.raw_path, "headers": dict(request.headers)})

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for message in sock:
            await sock.send_str(f"echo:{message.data}")
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws_echo)
    app.router.add_route("*", "/{tail:.*}", echo)
    with _loop_thread() as loop:
        runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(runner.setup(), loop).result(10)
        site = web.SockSite(runner, sock, ssl_context=tls.server_context(files))
        asyncio.run_coroutine_threadsafe(site.start(), loop).result(10)
        try:
            yield Upstream(sock.getsockname()[1], files.ca)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            sock.close()


@contextmanager
def _loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class Clock:
    """Real time plus an offset the test moves forward."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def gateway_config(
    tmp: Path,
    issuer: str,
    port: int,
    upstream: Upstream,
    apps: dict[str, Any] | None = None,
    **settings: Any,
) -> GatewayConfig:
    secret = tmp / "client-secret"
    secret.write_text(CLIENT_SECRET)
    return GatewayConfig.model_validate(
        {
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "client_secret_file": str(secret),
            "issuer_ca": str(tmp / "ca" / "ca.pem"),
            "scopes": ["openid", "email", "profile", "groups"],
            "host": GATEWAY_HOST,
            "listen": f"127.0.0.1:{port}",
            "tls": {"dev_dir": str(tmp / "ca")},
            "apps": {
                "crm": {
                    "host": APP_HOST,
                    "upstream": f"https://127.0.0.1:{upstream.port}",
                    "upstream_ca": str(upstream.ca),
                    "allow": {"groups": "sales"},
                    "deny": {"path": {"prefix": "/admin"}},
                }
            }
            | (apps or {}),
        }
        | settings
    )


@dataclass(frozen=True)
class ClientCerts:
    """A client CA for an mTLS app, a certificate it issued, and one from a stranger."""

    ca: Path
    good: tls.CertFiles
    stranger: tls.CertFiles
    fingerprint: str


def client_certs(tmp: Path) -> ClientCerts:
    now = now_utc()
    (tmp / "client").mkdir()
    ca, ca_key = tls.make_ca("Overcast test client CA", now)
    stranger_ca, stranger_key = tls.make_ca("Stranger CA", now)
    ca_files = tls.write_pair(ca, ca_key, tmp / "client" / "ca")
    good = tls.write_pair(
        *tls.issue(ca, ca_key, ["alice@corp.example"], now, True), tmp / "client" / "alice"
    )
    stranger = tls.write_pair(
        *tls.issue(stranger_ca, stranger_key, ["alice@corp.example"], now, True),
        tmp / "client" / "eve",
    )
    details = tls.cert_details(good.cert.read_text())
    return ClientCerts(ca_files.cert, good, stranger, str(details["sha256"]))


@dataclass
class RunningGateway:
    gateway: Gateway
    port: int
    ca: Path
    clock: Clock
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def url(self, host: str, path: str) -> str:
        return f"https://{host}:{self.port}{path}"

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, cert: tls.CertFiles | None = None) -> httpx.Client:
        context = self.trust()
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
        return httpx.Client(verify=context, timeout=20)


@contextmanager
def gateway_in_thread(config: GatewayConfig, sock: socket.socket) -> Iterator[RunningGateway]:
    """The real gateway app behind uvicorn (TLS, httptools), served from `sock`."""
    clock = Clock()
    gateway = build(config, clock=clock)
    files = tls.dev_ca(config.tls.dev_dir, [GATEWAY_HOST, APP_HOST], now_utc())
    uv = server(gateway, files)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        until(lambda: uv.started, 20, "the gateway to listen")
        until(lambda: gateway.ready, 20, "the gateway to discover the IdP")
        assert files.ca is not None
        yield RunningGateway(gateway, sock.getsockname()[1], files.ca, clock)
    finally:
        uv.should_exit = True
        thread.join(20)
        sock.close()


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def sign_in(client: httpx.Client, start: str, user: str) -> httpx.Response:
    """Open `start` through the gateway and sign in at the IdP's form as `user`."""
    form = client.get(start, follow_redirects=True)
    assert form.status_code == 200 and 'id="sign-in"' in form.text, form.text[:500]
    action = re.search(r'action="([^"]+)"', form.text)
    assert action is not None
    return client.post(
        httpx.URL(str(form.url)).join(action.group(1)),
        data={"username": user, "password": USERS[user]["password"]},
        follow_redirects=True,
    )


def confirm_idp_logout(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    """Press "Sign out" on the IdP's logout confirmation page."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert action is not None, page.text[:500]
    fields = dict(_HIDDEN.findall(page.text)) | {"logout": "yes"}
    return client.post(
        httpx.URL(str(page.url)).join(action.group(1)), data=fields, follow_redirects=True
    )


REPO = Path(__file__).resolve().parents[3]
# The CLI runs from the test's directory; it imports this checkout's code.
CLI_ENV = os.environ | {"PYTHONPATH": str(REPO)}


@dataclass
class Served:
    """`overcast gateway serve` running as its own process."""

    port: int
    metrics_port: int
    issuer: str
    ca: Path
    log: Path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def decisions(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]


def overcast(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overcast", *args], capture_output=True, text=True, env=CLI_ENV, **kw
    )


@contextmanager
def cli_gateway(
    tmp: Path, issuer: str, port: int, upstream: Upstream, **settings: Any
) -> Iterator[Served]:
    """Write an overcast.yaml for the app "crm" and run `overcast gateway serve` on it."""
    metrics_port = free_port()
    (tmp / "client-secret").write_text(CLIENT_SECRET)
    (tmp / "session-keys").write_text(overcast("gateway", "new-session-key", check=True).stdout)
    gateway = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret_file": str(tmp / "client-secret"),
        "issuer_ca": str(tmp / "ca" / "ca.pem"),
        "scopes": ["openid", "email", "profile", "groups"],
        "host": GATEWAY_HOST,
        "listen": f"127.0.0.1:{port}",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "tls": {"dev_dir": str(tmp / "ca")},
        "session_keys_file": str(tmp / "session-keys"),
        "apps": {
            "crm": {
                "host": APP_HOST,
                "upstream": f"https://127.0.0.1:{upstream.port}",
                "upstream_ca": str(upstream.ca),
                "allow": {"groups": "sales"},
            }
        },
    }
    config = tmp / "overcast.yaml"
    sites = {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}}
    config.write_text(json.dumps({"sites": sites, "gateway": gateway | settings}))  # JSON is YAML
    log = tmp / "gateway.log"
    served = Served(port, metrics_port, issuer, tmp / "ca" / "ca.pem", log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "overcast", "gateway", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - closed with the process
        cwd=tmp,
        env=CLI_ENV,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            url = f"https://{GATEWAY_HOST}:{port}/ready"
            return httpx.get(url, verify=served.trust()).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until(ready, 120, "overcast gateway serve to be ready")
        yield served
    finally:
        netns.stop([proc], 15)
