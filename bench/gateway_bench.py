"""Authenticated requests/s through the gateway, beside nginx proxy_pass and direct access.

    python bench/gateway_bench.py [--duration 5] [--threads 2]

All on loopback, all over TLS, one load tool (wrk, keep-alive):
  direct   wrk -> upstream (nginx serving a small static answer over TLS)
  nginx    wrk -> nginx proxy_pass (1 worker, upstream keepalive) -> upstream
  gateway  wrk -> `overcast gateway serve` (1 process) -> upstream, every request carrying
           a valid session cookie, so each one opens the sealed cookie, is decided by policy,
           logged as a JSON line, signed (cached assertion) and streamed through.
The session is minted with the gateway's own key ring; no IdP is involved in the hot path.
Prints req/s and p50/p99 latency at 64 and 8 connections, and the gateway's ratio to nginx
and added p50. Targets (issue 4): >= 0.5 of nginx, p99 <= 25 ms at 64, <= 2 ms added p50 at 8.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway import tls  # noqa: E402
from gateway.session import COOKIE, KeyRing, Session, SessionCodec, SessionStore  # noqa: E402

NGINX_BASE = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi;
  uwsgi_temp_path {tmp}/{name}-uwsgi;
  scgi_temp_path {tmp}/{name}-scgi;
  {body}
}}
"""

UPSTREAM = """
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
  }}
"""

PROXY = """
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    keepalive_requests 1000000;
    location / {{
      proxy_pass https://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}
  }}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} in 30 s")


@contextmanager
def process(args: list[str], what: str, port: int, **kw: object) -> Iterator[None]:
    proc = subprocess.Popen(args, **kw)  # type: ignore[call-overload]
    try:
        wait_port(port, proc, what)
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # a clean exit, so a profile gets written
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nginx(tmp: Path, name: str, body: str, port: int) -> ExitStack:
    conf = tmp / f"{name}.conf"
    conf.write_text(NGINX_BASE.format(tmp=tmp, name=name, body=body))
    stack = ExitStack()
    stack.enter_context(process(["nginx", "-p", str(tmp), "-c", str(conf)], f"nginx {name}", port))
    return stack


@contextmanager
def redis(sock: Path) -> Iterator[None]:
    args = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", ""]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(
    url: str, connections: int, seconds: int, threads: int, cookie: str = ""
) -> dict[str, float]:
    args = [
        "wrk",
        "--latency",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
    ]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None or errors is not None:
        raise SystemExit(f"wrk against {url} failed or saw errors:\n{out}")
    result = {"rps": float(rate.group(1))}
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"  wrk {url} -c{connections}: socket errors: {socket_errors.group(1)}", flush=True)
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert match is not None, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        result[f"p{pct}_ms"] = float(match.group(1)) * scale
    return result


def session_cookie(keys_file: Path) -> str:
    keys = KeyRing.load(keys_file)
    now = int(time.time())
    session = Session(
        sid="bench",
        sub="alice",
        claims={
            "sub": "alice",
            "email": "alice@corp.example",
            "email_verified": True,
            "groups": ["sales"],
        },
        issued_at=now,
        expires_at=now + 3600,
        refresh_at=now + 3600,
    )
    return f"{COOKIE}={SessionCodec(keys, SessionStore()).seal(session)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the gateway under cProfile, write FILE"
    )
    parser.add_argument("--only", choices=("direct", "nginx", "gateway"), help="measure one path")
    parser.add_argument(
        "--workers", type=int, default=1, help="gateway processes (> 1 starts a redis-server)"
    )
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[64, 8], help="wrk connection counts"
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} missing: apt-get install wrk nginx-light")
    with tempfile.TemporaryDirectory(prefix="oc-gwbench-") as name, ExitStack() as stack:
        tmp = Path(name)
        now = datetime.datetime.now(datetime.UTC)
        files = tls.dev_ca(tmp / "ca", ["127.0.0.1", "localhost"], now)
        certs = {"cert": files.cert, "key": files.key, "ca": files.ca}
        up, px, gw, metrics = free_port(), free_port(), free_port(), free_port()
        stack.enter_context(nginx(tmp, "upstream", UPSTREAM.format(port=up, **certs), up))
        stack.enter_context(nginx(tmp, "proxy", PROXY.format(port=px, upstream=up, **certs), px))
        keys = tmp / "session-keys"
        keys.write_text(
            subprocess.run(
                [sys.executable, "-m", "overcast", "gateway", "new-session-key"],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            ).stdout
        )
        store: dict[str, object] = {}
        if args.workers > 1:
            sock = tmp / "redis.sock"
            stack.enter_context(redis(sock))
            store = {"workers": args.workers, "session_store": f"unix://{sock}"}
        config = tmp / "overcast.yaml"
        config.write_text(
            json.dumps(
                {
                    "sites": {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}},
                    "gateway": {
                        # Never contacted: the bench's session is minted, not signed in.
                        "issuer": "https://127.0.0.1:9/",
                        "host": "127.0.0.1",
                        "listen": f"127.0.0.1:{gw}",
                        "metrics_listen": f"127.0.0.1:{metrics}",
                        "tls": {"dev_dir": str(tmp / "ca")},
                        "session_keys_file": str(keys),
                        **store,
                        "apps": {
                            "crm": {
                                "host": "localhost",
                                "upstream": f"https://127.0.0.1:{up}",
                                "upstream_ca": str(files.ca),
                                "allow": {"groups": "sales"},
                            }
                        },
                    },
                }
            )
        )
        decisions = open(tmp / "decisions.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(decisions.close)
        stack.enter_context(
            process(
                [
                    sys.executable,
                    *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
                    "-m",
                    "overcast",
                    "gateway",
                    "serve",
                    str(config),
                ],
                "overcast gateway serve",
                gw,
                stderr=decisions,
                cwd=REPO,
                env=os.environ | {"PYTHONPATH": str(REPO)},
            )
        )
        cookie = session_cookie(keys)
        targets = {
            "direct": (f"https://127.0.0.1:{up}/", ""),
            "nginx": (f"https://127.0.0.1:{px}/", ""),
            "gateway": (f"https://localhost:{gw}/", cookie),
        }
        results: dict[tuple[str, int], dict[str, float]] = {}
        for connections in args.connections:
            for label, (url, extra) in targets.items():
                if args.only and label != args.only:
                    continue
                wrk(url, connections, 1, args.threads, extra)  # warm up pools and caches
                results[label, connections] = wrk(
                    url, connections, args.duration, args.threads, extra
                )
        print(
            f"loopback, TLS everywhere, wrk -t{args.threads} {args.duration}s per run, {os.cpu_count()} CPUs"
        )
        if args.only:
            for (label, connections), r in results.items():
                print(label, connections, r)
            return
        print(f"{'path':<9} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for (label, connections), r in results.items():
            print(
                f"{label:<9} {connections:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            )
        ratio = results["gateway", 64]["rps"] / results["nginx", 64]["rps"]
        added = results["gateway", 8]["p50_ms"] - results["direct", 8]["p50_ms"]
        print(f"gateway/nginx req/s at 64 connections: {ratio:.2f} (target >= 0.5)")
        print(
            f"gateway p99 at 64 connections: {results['gateway', 64]['p99_ms']:.2f} ms (target <= 25)"
        )
        print(f"gateway added p50 at 8 connections vs direct: {added:.2f} ms (target <= 2)")
        lines = len((tmp / "decisions.log").read_bytes().splitlines())
        print(f"decision log lines written by the gateway: {lines}")


if __name__ == "__main__":
    main()
