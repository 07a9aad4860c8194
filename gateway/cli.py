"""`overcast gateway ...`: serve the SSO gateway, make its keys."""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import ipaddress
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gateway.config import GatewayConfig
from overcast import collector, exitcodes
from overcast.cli import CommandError, load_config

# Serving needs uvicorn, aiohttp, redis, cryptography and Prometheus: the functions below
# import them when they run, so that `overcast --help` and `validate` start without them.
if TYPE_CHECKING:
    import ssl

    import uvicorn
    from prometheus_client import CollectorRegistry

    from gateway.app import Gateway
    from gateway.server import ServerConfig
    from gateway.tls import CertFiles

WORKER_CONFIG = "OVERCAST_GATEWAY_CONFIG"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="the SSO gateway in front of SaaS and internal apps",
        description=(
            "An HTTPS reverse proxy that signs users in with the enterprise OpenID Connect "
            "provider, checks each app's allow/deny policy, and forwards allowed requests to "
            "the app with a signed ES256 identity assertion (X-Overcast-Jwt-Assertion)."
        ),
        epilog=(
            "examples:\n"
            "  overcast gateway new-session-key > /etc/overcast/session-keys\n"
            "  overcast gateway serve overcast.yaml"
        ),
    )
    sub = parser.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gateway described by the gateway: section of CONFIG",
        description=(
            "Serve HTTPS on gateway.listen and Prometheus metrics on gateway.metrics_listen "
            "(a separate listener, never the public one). Without tls.cert/tls.key a dev CA "
            "is made in tls.dev_dir (trust its ca.pem in your browser). Every policy decision "
            "is printed on stderr as one JSON line with its reason."
        ),
        epilog=(
            "examples:\n"
            "  overcast gateway new-session-key > /etc/overcast/session-keys\n"
            "  overcast gateway serve overcast.yaml\n"
            "  curl --cacert .overcast/gateway-tls/ca.pem https://localhost:8443/ready"
        ),
    )
    serve.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    serve.set_defaults(handler=_serve, long_running=True)

    key = sub.add_parser(
        "new-session-key",
        help="print a new session key line",
        description=(
            "Print 'KEY_ID BASE64_KEY' for gateway.session_keys_file. To rotate, put the new "
            "line first and keep the old one below it until every old session has expired."
        ),
        epilog="example:\n  overcast gateway new-session-key >> /etc/overcast/session-keys",
    )
    key.set_defaults(handler=_new_session_key)


def _new_session_key(args: argparse.Namespace) -> int:
    print(f"k{secrets.token_hex(4)} {base64.b64encode(secrets.token_bytes(32)).decode()}")
    return exitcodes.OK


def certificate(config: GatewayConfig, now: datetime.datetime) -> CertFiles:
    from gateway.tls import CertFiles, dev_ca

    if config.tls.cert is not None and config.tls.key is not None:
        return CertFiles(config.tls.cert, config.tls.key)
    names = [config.host, *(config.app_host(n) for n in config.apps)]
    address = config.listen.rpartition(":")[0].strip("[]")
    try:
        if not ipaddress.ip_address(address).is_unspecified:
            names.append(address)
    except ValueError:
        names.append(address)
    return dev_ca(config.tls.dev_dir, names, now)


def _tls(files: CertFiles, cas: tuple[Path, ...], *_: object) -> ssl.SSLContext:
    from gateway.tls import server_context

    return server_context(files, cas)


def uvicorn_config(app: Gateway | str, config: GatewayConfig, files: CertFiles) -> ServerConfig:
    """`app` is the gateway, or with several workers the import path of `worker_app`."""
    from gateway.server import ServerConfig, TlsHttpProtocol, TlsWebSocketProtocol

    cas = tuple(app.client_ca for app in config.apps.values() if app.client_ca is not None)
    host, _, port = config.listen.rpartition(":")
    return ServerConfig(
        app,
        limits=config.limits,
        # A partial, not a lambda: worker processes receive the config pickled. The
        # protocol does the handshake itself, timed (gateway.server).
        tls=functools.partial(_tls, files, cas),
        factory=isinstance(app, str),
        workers=config.workers,
        host=host.strip("[]"),
        port=int(port),
        loop="uvloop",
        http=TlsHttpProtocol,
        ws=TlsWebSocketProtocol,
        lifespan="on",
        # The gateway resolves X-Forwarded-For itself, from trusted_proxies only.
        proxy_headers=False,
        server_header=False,
        # The gateway dates its own replies, and forwards the upstream's Date (one, not two).
        date_header=False,
        access_log=False,
        log_config=None,
    )


def server(gateway: Gateway, files: CertFiles) -> uvicorn.Server:
    import uvicorn

    return uvicorn.Server(uvicorn_config(gateway, gateway.config, files))


def worker_app() -> Gateway:
    """One worker's gateway (uvicorn factory), from the config named in the environment."""
    from gateway.app import build

    config = load_config(os.environ[WORKER_CONFIG]).gateway
    assert config is not None, "checked by the parent before it started workers"
    gateway = build(config, decisions=sys.stderr)
    quiet_collector()
    return gateway


def quiet_collector() -> None:
    """A request's garbage is freed by reference counting; the collector runs after 20 000
    net allocations. Measured (bench, 1 process, 64 connections): p99 70-115 ms -> 13-16 ms."""
    collector.quiet(20_000, 50)


def _serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    from uvicorn.supervisors import Multiprocess

    from gateway.app import SetupError, build
    from overcast import metrics

    config = load_config(args.config).gateway
    if config is None:
        raise CommandError(
            f"{args.config} has no 'gateway:' section; add one with issuer and apps",
            exitcodes.USAGE,
        )
    try:
        gateway = build(config, decisions=sys.stderr)
        files = certificate(config, datetime.datetime.now(datetime.UTC))
        uv = server(gateway, files)
        uv.config.load()
        cast("ServerConfig", uv.config).tls_context()  # a bad certificate fails here, not later
    except OSError as exc:
        # A file the config names (secret, keys, certificates, dev CA directory).
        where = f"{exc.filename}: " if exc.filename else ""
        raise CommandError(
            f"{args.config}: gateway: {where}{exc.strerror or exc}; fix the path in the config",
            exitcodes.USAGE,
        ) from None
    except (SetupError, ValueError) as exc:
        raise CommandError(f"{args.config}: gateway: {exc}", exitcodes.USAGE) from None
    logging.getLogger("overcast.gateway").info("serving on %s", config.listen)
    if config.workers == 1:
        _serve_metrics(config, metrics.REGISTRY)
        quiet_collector()
        try:
            uv.run()
        except SystemExit:  # uvicorn exits when it cannot bind; its log line says why
            raise CommandError(_cannot_listen(config.listen)) from None
        return exitcodes.OK if uv.started else exitcodes.FAILURE
    with tempfile.TemporaryDirectory(prefix="overcast-gateway-metrics-") as shared:
        # Workers are fresh processes: they see both variables before importing anything.
        os.environ[WORKER_CONFIG] = str(Path(args.config).resolve())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        _serve_metrics(config, registry)
        workers = uvicorn_config("gateway.cli:worker_app", config, files)
        try:
            sock = workers.bind_socket()
        except SystemExit:
            raise CommandError(_cannot_listen(config.listen)) from None
        Multiprocess(workers, sockets=[sock]).run()
    return exitcodes.OK


def _cannot_listen(listen: str) -> str:
    return (
        f"cannot listen on {listen} (see the error above): another server may hold the port, "
        "or a port below 1024 needs root; change gateway.listen"
    )


def _serve_metrics(config: GatewayConfig, registry: CollectorRegistry) -> None:
    from prometheus_client import start_http_server

    host, _, port = config.metrics_listen.rpartition(":")
    try:
        start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    except OSError as exc:
        raise CommandError(f"cannot listen for metrics on {config.metrics_listen}: {exc}") from None
