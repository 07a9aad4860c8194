"""Authenticated requests/s through the gateway, beside nginx proxy_pass and direct access.

    python bench/gateway_bench.py [--duration 5] [--threads 2] [--workers 1 2]

All on loopback, all over TLS, one load tool (wrk, keep-alive):
  direct     wrk -> upstream (nginx serving a small static answer over TLS)
  nginx-N    wrk -> nginx proxy_pass (N workers, upstream keepalive) -> upstream
  gateway-N  wrk -> `overcast gateway serve` with N processes (N > 1 share sessions through
             a redis-server, as a real multi-process deployment must) -> upstream; every
             request carries a valid session cookie, so each one opens the sealed cookie, is
             decided by policy, logged as a JSON line, signed (cached assertion) and streamed
             through.
By default N is 1 and the number of cores (the realistic deployment on this box); each
gateway-N is compared with nginx-N, the same number of processes. The session
is minted with the gateway's own key ring; no IdP is involved in the hot path.
Prints req/s, p50/p99 latency at 64 and 8 connections and the CPU time the serving process
tree spent per request (steadier than req/s on a shared machine), its read/write syscalls
per request (a count: exact however loaded the machine is), and per gateway its ratio to
nginx and added p50. Targets (issue 4): >= 0.5 of nginx, p99 <= 25 ms at 64, <= 2 ms
added p50 at 8.
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
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway import tls  # noqa: E402
from gateway.session import COOKIE, KeyRing, Session, SessionCodec, SessionStore  # noqa: E402

NGINX_BASE = """
daemon off;
master_process {master};
worker_processes {workers};
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


def usage(pid: int) -> tuple[float, int]:
    """User + system CPU seconds and read/write syscalls (/proc/PID/io syscr + syscw) of
    `pid` and all its descendants (live ones). Syscalls per request are a count, so they
    stay exact on a shared machine where CPU time and rates move with other load."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += [child for child, parent in parents.items() if parent == current]
    calls = 0
    for p in tree:
        try:
            io = Path(f"/proc/{p}/io").read_text()
        except OSError:
            continue
        calls += sum(int(line.split()[1]) for line in io.splitlines() if line.startswith("sysc"))
    return sum(times.get(p, 0.0) for p in tree), calls


@contextmanager
def process(
    args: list[str], what: str, port: int, **kw: object
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, **kw)  # type: ignore[call-overload]
    try:
        wait_port(port, proc, what)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)  # a clean exit, so a profile gets written
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nginx(
    tmp: Path, name: str, body: str, port: int, workers: int = 1
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """nginx in the foreground: one process, or a master and `workers` workers."""
    conf = tmp / f"{name}.conf"
    master = "on" if workers > 1 else "off"
    conf.write_text(
        NGINX_BASE.format(tmp=tmp, name=name, body=body, master=master, workers=workers)
    )
    return process(["nginx", "-p", str(tmp), "-c", str(conf)], f"nginx {name}", port)


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


def bench_session() -> Session:
    """Alice of group sales, signed in for the next hour."""
    now = int(time.time())
    return Session(
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


def session_cookie(keys_file: Path) -> str:
    codec = SessionCodec(KeyRing.load(keys_file), SessionStore())
    return f"{COOKIE}={codec.seal(bench_session())}"


def gateway_config(
    tmp: Path, name: str, port: int, upstream: int, ca: Path, keys: Path, store: str | None
) -> Path:
    """An overcast.yaml with one app at https://localhost:PORT that lets group sales in."""
    config = tmp / f"{name}.yaml"
    extra: dict[str, object] = {}
    if store is not None:
        extra = {"workers": int(name.rsplit("-", 1)[1]), "session_store": store}
    config.write_text(
        json.dumps(
            {
                "sites": {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}},
                "gateway": {
                    # Never contacted: the bench's session is minted, not signed in.
                    "issuer": "https://127.0.0.1:9/",
                    "host": "127.0.0.1",
                    "listen": f"127.0.0.1:{port}",
                    "metrics_listen": f"127.0.0.1:{free_port()}",
                    "tls": {"dev_dir": str(tmp / "ca")},
                    "session_keys_file": str(keys),
                    **extra,
                    "apps": {
                        "crm": {
                            "host": "localhost",
                            "upstream": f"https://127.0.0.1:{upstream}",
                            "upstream_ca": str(ca),
                            "allow": {"groups": "sales"},
                        }
                    },
                },
            }
        )
    )
    return config


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    pid: int  # the process tree whose CPU time a request costs
    cookie: str = ""


def measure(target: Target, connections: int, args: argparse.Namespace) -> dict[str, float]:
    wrk(target.url, connections, 1, args.threads, target.cookie)  # warm pools and caches
    cpu_before, calls_before = usage(target.pid)
    result = wrk(target.url, connections, args.duration, args.threads, target.cookie)
    cpu_after, calls_after = usage(target.pid)
    requests = result["rps"] * args.duration
    result["cpu_us"] = (cpu_after - cpu_before) / requests * 1e6
    result["syscalls"] = (calls_after - calls_before) / requests
    return result


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--profile", metavar="FILE", help="run a 1-process gateway under cProfile, write FILE"
    )
    parser.add_argument(
        "--only", choices=("direct", "nginx", "gateway"), help="measure one kind of path"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=sorted({1, cores}),
        help=f"gateway process counts to measure (default 1 and {cores}, the cores; "
        "> 1 shares sessions through a redis-server)",
    )
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[64, 8], help="wrk connection counts"
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx", *(["redis-server"] if max(args.workers) > 1 else [])):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} missing: apt-get install wrk nginx-light redis-server")
    with tempfile.TemporaryDirectory(prefix="oc-gwbench-") as name, ExitStack() as stack:
        tmp = Path(name)
        now = datetime.datetime.now(datetime.UTC)
        files = tls.dev_ca(tmp / "ca", ["127.0.0.1", "localhost"], now)
        assert files.ca is not None
        certs = {"cert": files.cert, "key": files.key, "ca": files.ca}
        up = free_port()
        direct = stack.enter_context(nginx(tmp, "upstream", UPSTREAM.format(port=up, **certs), up))
        targets = [Target("direct", f"https://127.0.0.1:{up}/", direct.pid)]
        for workers in args.workers:
            px = free_port()
            body = PROXY.format(port=px, upstream=up, **certs)
            proxy = stack.enter_context(nginx(tmp, f"proxy-{workers}", body, px, workers))
            targets.append(Target(f"nginx-{workers}", f"https://127.0.0.1:{px}/", proxy.pid))
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
        store = None
        if max(args.workers) > 1:
            stack.enter_context(redis(tmp / "redis.sock"))
            store = f"unix://{tmp / 'redis.sock'}"
        decisions = open(tmp / "decisions.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(decisions.close)
        cookie = session_cookie(keys)
        for workers in args.workers:
            gw = free_port()
            label = f"gateway-{workers}"
            config = gateway_config(
                tmp, label, gw, up, files.ca, keys, store if workers > 1 else None
            )
            profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
            command = [sys.executable, *(profile if workers == 1 else [])]
            served = stack.enter_context(
                process(
                    [*command, "-m", "overcast", "gateway", "serve", str(config)],
                    f"overcast gateway serve ({workers} workers)",
                    gw,
                    stderr=decisions,
                    cwd=REPO,
                    env=os.environ | {"PYTHONPATH": str(REPO)},
                )
            )
            targets.append(Target(label, f"https://localhost:{gw}/", served.pid, cookie))
        results: dict[tuple[str, int], dict[str, float]] = {}
        for connections in args.connections:
            for target in targets:
                if args.only is None or target.label.startswith(args.only):
                    results[target.label, connections] = measure(target, connections, args)
        print(
            f"loopback, TLS everywhere, wrk -t{args.threads} {args.duration}s per run, "
            f"{cores} CPUs (shared: absolute rates move with the load; CPU/request is steadier)"
        )
        print("nginx-N: N workers, upstream keepalive; gateway-N: N processes (N > 1: Redis)")
        print(
            f"{'path':<11} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}"
            f" {'r+w syscalls/req':>17}"
        )
        for (label, connections), r in results.items():
            print(
                f"{label:<11} {connections:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                f"{r['p99_ms']:>8.2f} {r['cpu_us']:>11.0f} {r['syscalls']:>17.2f}"
            )
        if args.only is not None:
            return
        for workers in args.workers:
            label = f"gateway-{workers}"
            ratio = results[label, 64]["rps"] / results[f"nginx-{workers}", 64]["rps"]
            added = results[label, 8]["p50_ms"] - results["direct", 8]["p50_ms"]
            print(
                f"{label}: {ratio:.2f} of nginx-{workers} req/s at 64 connections (target >= 0.5), "
                f"p99 {results[label, 64]['p99_ms']:.1f} ms at 64 (target <= 25), "
                f"added p50 {added:.2f} ms at 8 (target <= 2)"
            )
        lines = len((tmp / "decisions.log").read_bytes().splitlines())
        print(f"decision log lines written by the gateways: {lines}")


if __name__ == "__main__":
    main()
