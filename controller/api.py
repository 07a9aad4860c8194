"""A read-only JSON API on its own listener (`controller run --api HOST:PORT`).

    GET /            the endpoints
    GET /switches    each switch: site, datapath id, peer address, connected for, programmed
    GET /segments    each L2 segment: VNI, sites, learned MACs, ACL default
    GET /macs        learned MACs with site, port and age; configured hosts
    GET /flows       flow entries per table per switch (?site=hq: the entries themselves)
    GET /acls        per segment rule: its action and the packets it matched, per switch

Only GET; nothing here changes the network. The answer is taken in the controller's own
event thread (`ask`), so it is a consistent view. Keep it on loopback or a management
network: it shows the network's layout.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)

ENDPOINTS = ("switches", "segments", "macs", "flows", "acls")

Ask = Callable[[str, dict[str, str]], Any]  # (endpoint, query) -> JSON-able, or KeyError


def serve(host: str, port: int, ask: Ask) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; raises OSError if it cannot listen."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "overcast-controller"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            name = url.path.strip("/")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if name == "":
                self._send(200, {"endpoints": [f"/{e}" for e in ENDPOINTS]})
            elif name not in ENDPOINTS:
                self._send(404, {"error": f"no endpoint /{name}; try one of {list(ENDPOINTS)}"})
            else:
                try:
                    self._send(200, ask(name, query))
                except KeyError as exc:
                    self._send(404, {"error": str(exc.args[0]) if exc.args else "not found"})
                except TimeoutError:
                    self._send(503, {"error": "the controller did not answer in time"})

        def _refuse(self) -> None:
            self._send(405, {"error": "read-only API: only GET"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("api: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="api", daemon=True).start()
    return server
