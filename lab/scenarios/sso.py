"""`sso`: a user signs in through the gateway to a fronted app; a user outside the app's
policy is refused, and the app never sees them.

Everything runs in one namespace of the lab's own (`<lab>.sso`), on its loopback:
- the enterprise's OpenID provider: npm `oidc-provider` (`lab.idp`), with alice (group
  sales) and bob (group eng), each with a password made for this run;
- the fronted app `crm` (`lab.whoami`), which answers with the identity it verified from
  the gateway's signed assertion (ES256 against the gateway's JWKS, audience crm);
- `overcast gateway serve` in front of it, with the policy `allow: {groups: sales}`.
A user is an HTTP client that opens the app, follows the redirects to the provider, fills
in its sign-in form and follows the redirects back, as a browser would (authorization code
flow with PKCE, OpenID Connect Core 1.0 section 3.1; RFC 7636).

The gateway is 127.0.0.1 and the app localhost: both resolve without DNS or a hosts file,
and one dev CA (`gateway.tls.dev_ca`) signs the provider's, the gateway's and the app's
certificates, so every hop is verified TLS.

`sign_in_story(state_dir, progress)` is the whole act, for the demo to run inside its own
lab; the scenario runs it in a lab of no sites."""

from __future__ import annotations

import contextlib
import datetime
import html
import json
import os
import re
import secrets
import select
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import idp, names, netns
from lab.netns import inside
from lab.registry import Registry
from lab.scenarios import Check, Progress, SitelessScenario

GATEWAY_HOST = "127.0.0.1"
APP_HOST = "localhost"
GATEWAY_PORT = 8443
APP_PORT = 9443  # the upstream, reached only by the gateway
CLIENT_ID = "overcast-gateway"
APP = "crm"
ALLOWED_GROUP = "sales"
USERS = {  # name -> (email, groups); passwords are made per run
    "alice": ("alice@corp.example", ["sales"]),
    "bob": ("bob@corp.example", ["eng"]),
}
START_TIMEOUT = 30.0  # each peer: Node and Python start slowly on a busy machine
SSO_DIR = "sso"


class SsoSetupError(RuntimeError):
    """A peer of the sign-in did not start; the message says which and where its log is."""


@dataclass(frozen=True)
class Visit:
    """What a user got after signing in, and how long the whole round trip took."""

    user: str
    status: int
    body: str
    redirects: int
    ms: float


def sign_in_story(state_dir: Path, progress: Progress) -> list[Check]:
    """Run the provider, the app and the gateway in a namespace recorded in the lab at
    `state_dir`; alice signs in and reaches crm, bob signs in and is refused. Everything
    it started is stopped and its namespace removed before it returns."""
    node, script = idp.locate()
    registry = Registry(state_dir)
    ns = registry.netns(names.sso_netns(state_dir.name))
    work = registry.file(state_dir / SSO_DIR)
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    netns.ensure(ns)
    try:
        netns.up_loopback(ns)
        passwords = {user: secrets.token_urlsafe(12) for user in USERS}
        with _peers(ns, work, [str(node), str(script)], passwords, progress) as ca, inside(ns):
            visits = {}
            for user in USERS:
                progress(f"sso: {user} opens https://{APP_HOST}:{GATEWAY_PORT}/ and signs in")
                visits[user] = _sign_in(user, passwords[user], ca)
        decisions = _decisions(work / "gateway.log", len(USERS))
        seen = _lines(work / "whoami.log")
    finally:
        netns.kill_all([ns])
        netns.remove(ns)
    return _checks(visits, decisions, seen)


# -- the peers -----------------------------------------------------------------------------


@contextlib.contextmanager
def _peers(
    ns: str, work: Path, idp_argv: list[str], passwords: dict[str, str], progress: Progress
) -> Iterator[Path]:
    """The provider, the app and the gateway running in `ns`, until the `with` ends;
    yields the CA that signs all three."""
    tls = _dev_ca(work)
    gateway = f"https://{GATEWAY_HOST}:{GATEWAY_PORT}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        progress(f"sso: OpenID provider (oidc-provider on Node 22) in {ns}")
        idp_config = _idp_config(work, tls, passwords)
        line = _start(
            procs,
            ns,
            [*idp_argv, str(idp_config)],
            work / "idp.log",
            "the OpenID provider",
            env={"NODE_EXTRA_CA_CERTS": str(tls / "ca.pem")},
        )
        progress(f"sso: app {APP} at https://{GATEWAY_HOST}:{APP_PORT}, reached via the gateway")
        app = [
            *(sys.executable, "-m", "lab.whoami", "--listen", f"{GATEWAY_HOST}:{APP_PORT}"),
            *("--cert", str(tls / "server.pem"), "--key", str(tls / "server.key")),
            *("--gateway", gateway, "--gateway-ca", str(tls / "ca.pem"), "--app", APP),
        ]
        _start(procs, ns, app, work / "whoami.log", f"the app {APP}")
        progress(f"sso: gateway at {gateway}, {APP} at https://{APP_HOST}:{GATEWAY_PORT}/")
        config = _gateway_config(work, tls, json.loads(line)["issuer"])
        serve = [sys.executable, "-m", "overcast", "gateway", "serve", str(config)]
        _start(procs, ns, serve, work / "gateway.log", "the gateway", ready=None)
        with inside(ns):
            _wait_ready(procs[-1], work / "gateway.log", tls / "ca.pem")
        yield tls / "ca.pem"
    finally:
        netns.stop(procs)


def _dev_ca(work: Path) -> Path:
    from gateway import tls

    directory = work / "tls"
    tls.dev_ca(directory, [GATEWAY_HOST, APP_HOST], datetime.datetime.now(datetime.UTC))
    return directory


def _idp_config(work: Path, tls: Path, passwords: dict[str, str]) -> Path:
    """oidc-provider's users and its one client, the gateway (`tests/js/idp.mjs`)."""
    app = f"https://{APP_HOST}:{GATEWAY_PORT}"
    config = {
        "cert": str(tls / "server.pem"),
        "key": str(tls / "server.key"),
        "host": GATEWAY_HOST,
        "users": {
            user: {
                "password": passwords[user],
                "email": email,
                "email_verified": True,
                "groups": groups,
            }
            for user, (email, groups) in USERS.items()
        },
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": _secret(work),
                "redirect_uris": [f"{app}/.overcast/callback"],
                "post_logout_redirect_uris": [f"{app}/.overcast/signed-out"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }
        ],
    }
    return _private(work / "idp.json", json.dumps(config))


def _secret(work: Path) -> str:
    path = work / "client-secret"
    if not path.exists():
        _private(path, secrets.token_urlsafe(24))
    return path.read_text()


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _gateway_config(work: Path, tls: Path, issuer: str) -> Path:
    """An overcast.yaml whose gateway fronts crm for the group sales (JSON is YAML)."""
    gateway = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret_file": str(work / "client-secret"),
        "issuer_ca": str(tls / "ca.pem"),
        "scopes": ["openid", "email", "profile", "groups"],
        "host": GATEWAY_HOST,
        "listen": f"{GATEWAY_HOST}:{GATEWAY_PORT}",
        "tls": {"dev_dir": str(tls)},
        "apps": {
            APP: {
                "host": APP_HOST,
                "upstream": f"https://{GATEWAY_HOST}:{APP_PORT}",
                "upstream_ca": str(tls / "ca.pem"),
                "allow": {"groups": ALLOWED_GROUP},
            }
        },
    }
    sites = {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}}
    path = work / "overcast.yaml"
    path.write_text(json.dumps({"sites": sites, "gateway": gateway}, indent=2))
    return path


def _start(
    procs: list[subprocess.Popen[bytes]],
    ns: str,
    argv: list[str],
    log: Path,
    what: str,
    *,
    env: dict[str, str] | None = None,
    ready: float | None = START_TIMEOUT,
) -> str:
    """Start `argv` in `ns` (stderr to `log`), and unless `ready` is None return its first
    line on stdout, its sign that it listens."""
    root = str(Path(__file__).absolute().parents[2])  # this package, wherever it runs from
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if ready is not None else subprocess.DEVNULL,
            stderr=err,
            env=os.environ | {"PYTHONPATH": root} | (env or {}),
            start_new_session=True,  # a Ctrl-C at the terminal reaches us; we stop it
        )
    procs.append(proc)
    if ready is None:
        return ""
    assert proc.stdout is not None
    line = b""
    if select.select([proc.stdout], [], [], ready)[0]:
        line = proc.stdout.readline()
    if not line:
        raise SsoSetupError(f"{what} did not start (see {log}): {_tail(log)}")
    return line.decode()


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, ca: Path) -> None:
    """Until the gateway answers /ready: it listens and has read the provider's discovery."""
    import httpx

    trust = ssl.create_default_context(cafile=str(ca))

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            url = f"https://{GATEWAY_HOST}:{GATEWAY_PORT}/ready"
            return httpx.get(url, verify=trust, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not netns.wait_until(ready, START_TIMEOUT, 0.1) or proc.poll() is not None:
        raise SsoSetupError(f"the gateway did not become ready (see {log}): {_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()[-3:]
    return " / ".join(lines) or "no output"


# -- the user ------------------------------------------------------------------------------

_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def _sign_in(user: str, password: str, ca: Path) -> Visit:
    """Open crm through the gateway with a fresh browser-like client, sign in at the
    provider's form, and follow the redirects back to wherever they end."""
    import httpx

    start = time.monotonic()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=20) as client:
        form = client.get(f"https://{APP_HOST}:{GATEWAY_PORT}/", follow_redirects=True)
        action = _FORM_ACTION.search(form.text)
        if form.status_code != 200 or action is None:
            raise SsoSetupError(
                f"{user}: the gateway did not lead to the provider's sign-in form "
                f"(HTTP {form.status_code} at {form.url})"
            )
        landed = client.post(
            form.url.join(html.unescape(action.group(1))),
            data={"username": user, "password": password},
            follow_redirects=True,
        )
    return Visit(
        user,
        landed.status_code,
        landed.text,
        len(form.history) + len(landed.history),
        (time.monotonic() - start) * 1000,
    )


# -- what happened -------------------------------------------------------------------------


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


def _decisions(log: Path, users: int) -> list[dict[str, Any]]:
    """The gateway's policy decision lines for crm that name a user (it writes them at the
    end of an event-loop turn: wait until each user's is there)."""

    def named() -> list[dict[str, Any]]:
        return [
            d
            for d in _lines(log)
            if d.get("event") == "decision" and d.get("app") == APP and d.get("sub")
        ]

    netns.wait_until(lambda: len({d["sub"] for d in named()}) >= users, 5.0)
    return named()


def _checks(
    visits: dict[str, Visit], decisions: list[dict[str, Any]], seen: list[dict[str, Any]]
) -> list[Check]:
    alice, bob = visits["alice"], visits["bob"]
    checks = [
        Check(
            "alice signs in to crm",
            alice.status == 200,
            f"HTTP {alice.status} from crm after the provider's sign-in form "
            f"({alice.redirects} redirects, {alice.ms:.0f} ms)",
            {
                "user": "alice",
                "status": alice.status,
                "redirects": alice.redirects,
                "sign_in_ms": round(alice.ms, 1),
            },
        )
    ]
    identity = _json(alice.body)
    verified = identity.get("verified") is True and identity.get("sub") == "alice"
    checks.append(
        Check(
            "crm verified alice's identity",
            verified
            and ALLOWED_GROUP in (identity.get("groups") or [])
            and identity.get("aud") == APP,
            (
                f"sub {identity.get('sub')}, {identity.get('email')}, groups "
                f"{','.join(identity.get('groups') or [])}: ES256 assertion checked against the "
                "gateway's JWKS, audience crm"
            )
            if verified
            else f"crm did not verify alice: {identity.get('error') or alice.body[:120]}",
            {k: identity.get(k) for k in ("sub", "email", "groups", "aud", "iss")},
        )
    )
    refusal = next((d for d in decisions if d["sub"] == "bob" and d.get("allowed") is False), None)
    reason = str(refusal["reason"]) if refusal else ""
    checks.append(
        Check(
            "bob is refused",
            bob.status == 403 and bool(reason) and html.escape(reason) in bob.body,
            f"HTTP {bob.status} after signing in"
            + (
                f", the page says why: {reason}"
                if reason and html.escape(reason) in bob.body
                else ""
            ),
            {"user": "bob", "status": bob.status, "reason": reason, "sign_in_ms": round(bob.ms, 1)},
        )
    )
    allowed = next((d for d in decisions if d["sub"] == "alice" and d.get("allowed")), None)
    checks.append(
        Check(
            "the gateway logged each decision",
            allowed is not None and refusal is not None,
            "; ".join(
                f"{d['sub']} {'allowed' if d['allowed'] else 'refused'}: {d['reason']}"
                for d in (allowed, refusal)
                if d is not None
            )
            or "no decision line naming alice or bob",
            {"allowed": allowed, "refused": refusal},
        )
    )
    users = sorted({str(line.get("sub")) for line in seen})
    unverified = [line for line in seen if not line.get("verified")]
    checks.append(
        Check(
            "crm never saw bob",
            "bob" not in users and not unverified and bool(seen),
            f"{len(seen)} request(s) reached crm, all with a verified assertion, from "
            f"{', '.join(users) or 'nobody'}",
            {"requests": len(seen), "users": users, "unverified": len(unverified)},
        )
    )
    return checks


def _json(body: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


SCENARIO = SitelessScenario(
    name="sso",
    promise=(
        "a user signs in through the gateway (real OpenID provider) to a fronted app that "
        "verifies who they are; a user outside the policy gets 403 and never reaches it"
    ),
    act=sign_in_story,
)
