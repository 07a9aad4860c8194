"""The site's attestation agent: measures the site into its TPM and answers the verifier.

It runs at the site (in the lab: in the site's namespace, beside the site's swtpm) and
serves HTTP on the management network, one request at a time, as the TPM without a
resource manager wants:

  GET  /identity  EK and AK public areas (TPM2B_PUBLIC, base64), for enrolment
  POST /enrol     {credential}: the challenge opened by the TPM -> {proof} (an HMAC of it)
  POST /quote     {nonce}: measure again, quote the policy's PCR -> {quote, events}
  POST /key       {credential, public_key}: the site's WireGuard private key, sealed to
                  this TPM, opened and written to the site's key directory (0600) only

Nothing here is secret on the wire: quotes are signed, credentials open only in this TPM,
and the opened key never leaves this process except into the site's own key file.

Measurement (attest/measure.py) happens at start and before every quote: a name whose
digest changed since it was last measured is extended again with a new event, as Linux
IMA measures a file anew when it changes, so a replaced binary shows in the next quote.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from attest import eventlog
from attest.eventlog import Event
from attest.measure import MeasureError, measure_all
from attest.tpm import Tpm, TpmError
from attest.verify import enrolment_proof
from bridge.keys import KeyStoreError, public_key_of

log = logging.getLogger("overcast.attest.agent")
EVENT_LOG = "eventlog.json"
MAX_BODY = 64 * 1024


class AgentError(Exception):
    """A request the agent refuses; the message goes back to the verifier."""


@dataclass
class Agent:
    site: str
    tpm: Tpm
    state_dir: Path  # the site's own: its event log
    keys_dir: Path  # the site's WireGuard key directory
    items: dict[str, str]  # attest.measure
    site_config: Path
    pcr: int
    root: Path = Path("/")
    events: list[Event] = field(default_factory=list)

    def start(self) -> None:
        """Keys made (once), the event log matched to the PCR, everything measured."""
        self.tpm.ensure_keys()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.tpm.read_pcr(self.pcr) == eventlog.PCR_RESET:
            # A TPM reset (reboot): the old log explains nothing any more.
            self.events = []
        else:
            try:
                self.events = eventlog.parse(json.loads((self.state_dir / EVENT_LOG).read_text()))
            except (OSError, ValueError, eventlog.EventLogError):
                # The PCR holds what no log explains: quotes will fail replay, which is right.
                log.warning(
                    "site %s: PCR %d is extended but no event log explains it", self.site, self.pcr
                )
                self.events = []
        self.measure()

    def measure(self) -> None:
        have = eventlog.latest(self.events)
        for name, digest in measure_all(self.items, self.site_config, self.root).items():
            if have.get(name) != digest:
                event = Event(self.pcr, name, digest)
                self.tpm.extend(self.pcr, event.extend_digest())
                self.events.append(event)
                self._save()
                log.info(
                    "site %s: measured %s %s into PCR %d", self.site, name, digest[:16], self.pcr
                )

    def _save(self) -> None:
        tmp = self.state_dir / f".{EVENT_LOG}.new"
        tmp.write_text(json.dumps([e.as_dict() for e in self.events]))
        tmp.replace(self.state_dir / EVENT_LOG)

    def identity(self) -> dict[str, Any]:
        ident = self.tpm.ensure_keys()
        return {
            "site": self.site,
            "ek_public": _b64(ident.ek_public),
            "ak_public": _b64(ident.ak_public),
        }

    def enrol(self, request: dict[str, Any]) -> dict[str, Any]:
        secret = self.tpm.activate_credential(_unb64(request, "credential"))
        return {"proof": _b64(enrolment_proof(secret))}

    def quote(self, request: dict[str, Any]) -> dict[str, Any]:
        nonce = request.get("nonce")
        try:
            raw = bytes.fromhex(nonce) if isinstance(nonce, str) else b""
        except ValueError:
            raw = b""
        if not 8 <= len(raw) <= 32:
            raise AgentError("nonce must be 8-32 bytes in hex")
        self.measure()
        q = self.tpm.quote(raw, [self.pcr])
        return {
            "message": _b64(q.message),
            "signature": _b64(q.signature),
            "pcrs": _b64(q.pcrs),
            "events": [e.as_dict() for e in self.events],
        }

    def install_key(self, request: dict[str, Any]) -> dict[str, Any]:
        secret = self.tpm.activate_credential(_unb64(request, "credential"))
        private = base64.b64encode(secret).decode()
        try:
            public = public_key_of(private)
        except KeyStoreError:
            raise AgentError("the credential does not hold a WireGuard key") from None
        if public != request.get("public_key"):
            raise AgentError("the opened key does not match the public key sent with it")
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.keys_dir / f"{self.site}.key"
        tmp = path.with_name(f".{path.name}.new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
        tmp.replace(path)
        log.info("site %s: WireGuard key installed from the TPM (public %s)", self.site, public)
        return {"public_key": public}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(request: dict[str, Any], key: str) -> bytes:
    value = request.get(key)
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raise AgentError(f"{key} is not base64") from None


def serve(
    agent: Agent, host: str, port: int, ready: Callable[[HTTPServer], None] | None = None
) -> None:
    """Answer the verifier until interrupted."""
    routes: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
        ("GET", "/identity"): lambda _: agent.identity(),
        ("POST", "/enrol"): agent.enrol,
        ("POST", "/quote"): agent.quote,
        ("POST", "/key"): agent.install_key,
    }

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            route = routes.get((method, self.path))
            if route is None:
                self._send(404, {"error": f"no {method} {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error": f"request over {MAX_BODY} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise AgentError("the request body must be a JSON object")
                self._send(200, route(body))
            except (AgentError, ValueError) as exc:
                self._send(400, {"error": str(exc)})
            except (TpmError, MeasureError) as exc:
                log.error("site %s: %s", agent.site, exc)
                self._send(500, {"error": str(exc)})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _send(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("site %s: %s", agent.site, format % args)

    server = HTTPServer((host, port), Handler)
    if ready is not None:
        ready(server)
    with server:
        server.serve_forever()
