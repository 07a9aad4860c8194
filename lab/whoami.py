"""The lab's fronted app: an HTTPS upstream that answers with the identity it verified.

Every request must carry the gateway's identity assertion (`X-Overcast-Jwt-Assertion`, an
ES256 JWT, RFC 7519): the app checks its signature against the gateway's JWKS (RFC 7517;
fetched on the first request and again for a key id it does not know), its issuer, and
that its audience is this app, exactly as a real app behind the gateway should. It answers
200 with the verified claims as JSON, or 401 saying what was wrong, and prints one JSON
line per request on stderr (so a scenario can tell which users ever reached it); its one
line on stdout says it listens.

    python -m lab.whoami --listen 127.0.0.1:9443 --cert server.pem --key server.key \\
        --gateway https://127.0.0.1:8443 --gateway-ca ca.pem --app crm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from typing import Any

import jwt
from aiohttp import ClientSession, web

from gateway.assertion import HEADER, verify

READY = "listening"  # the first line on stdout, once the port is bound


class Whoami:
    def __init__(self, gateway: str, trust: ssl.SSLContext, app: str) -> None:
        self.gateway, self.trust, self.app = gateway.rstrip("/"), trust, app
        self.jwks: dict[str, Any] = {"keys": []}

    async def _fetch_jwks(self) -> None:
        async with (
            ClientSession() as client,
            client.get(f"{self.gateway}/.well-known/jwks.json", ssl=self.trust) as reply,
        ):
            reply.raise_for_status()
            self.jwks = await reply.json(content_type=None)

    def _known(self, token: str) -> bool:
        kid = jwt.get_unverified_header(token).get("kid")
        return any(k.get("kid") == kid for k in self.jwks["keys"])

    async def handle(self, request: web.Request) -> web.Response:
        token = request.headers.get(HEADER)
        line: dict[str, Any] = {"method": request.method, "path": request.raw_path}
        try:
            if token is None:
                raise jwt.InvalidTokenError(f"no {HEADER} header: not sent by the gateway")
            if not self._known(token):
                await self._fetch_jwks()
            claims = verify(token, self.jwks, self.app, self.gateway)
        except jwt.PyJWTError as exc:
            line |= {"verified": False, "error": str(exc)}
            print(json.dumps(line), file=sys.stderr, flush=True)
            return web.json_response(line, status=401)
        line |= {"verified": True, "app": self.app} | {
            k: claims.get(k) for k in ("sub", "email", "email_verified", "groups", "aud", "iss")
        }
        print(json.dumps(line), file=sys.stderr, flush=True)
        return web.json_response(line)


async def serve(args: argparse.Namespace) -> None:
    trust = ssl.create_default_context(cafile=args.gateway_ca)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", Whoami(args.gateway, trust, args.app).handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=tls).start()
    print(READY, flush=True)
    await asyncio.Event().wait()  # until SIGTERM


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.whoami", description=__doc__)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--cert", required=True, help="the app's TLS certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--gateway", required=True, help="the gateway's URL: assertion issuer")
    parser.add_argument("--gateway-ca", required=True, help="the CA that signs the gateway's TLS")
    parser.add_argument("--app", required=True, help="this app's name: the audience it accepts")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        sys.exit(f"whoami: cannot serve on {args.listen}: {exc}")


if __name__ == "__main__":
    main()
