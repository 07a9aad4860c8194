"""Real receivers for the sink tests: rsyslog, aiosmtpd and an HTTP server, each its own
process (in a namespace when given one), always stopped on exit."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[3]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now (for a namespace's own loopback any port is free)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _prefix(netns: str | None) -> list[str]:
    return [] if netns is None else ["ip", "netns", "exec", netns]


@contextlib.contextmanager
def receiver(kind: str, *args: str, netns: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """`python -m tests.integration.bgp_guard.receivers KIND ARGS`, once it said ready."""
    proc = subprocess.Popen(
        [*_prefix(netns), sys.executable, "-m", "tests.integration.bgp_guard.receivers", kind, *args],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"{kind} receiver did not start: {line!r}"
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
*.* action(type="omfile" file="{out}" template="fields")
"""


@contextlib.contextmanager
def rsyslog(
    tmp: Path, udp: int, tcp: int, netns: str | None = None, name: str = "rsyslog"
) -> Iterator[Path]:
    """rsyslogd in the foreground with only UDP and TCP inputs on 127.0.0.1, writing every
    message as one JSON object per line to the returned file."""
    work = tmp / f"{name}-work"
    work.mkdir(exist_ok=True)
    out = tmp / f"{name}.jsonl"
    conf = tmp / f"{name}.conf"
    conf.write_text(RSYSLOG_CONF.format(work=work, udp=udp, tcp=tcp, out=out))
    argv = ["rsyslogd", "-n", "-C", "-f", str(conf), "-i", str(tmp / f"{name}.pid")]
    proc = subprocess.Popen([*_prefix(netns), *argv], stderr=subprocess.PIPE, text=True)
    try:
        probe = [*_prefix(netns), sys.executable, "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {tcp}), 1).close()"]  # fmt: skip
        wait_for(
            lambda: proc.poll() is not None or subprocess.run(probe, capture_output=True).returncode == 0,
            what="rsyslogd to listen",
        )  # fmt: skip
        assert proc.poll() is None, f"rsyslogd exited: {proc.stderr.read() if proc.stderr else ''}"
        yield out
    finally:
        proc.terminate()
        proc.wait(10)


def tls_certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key): the test's own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
