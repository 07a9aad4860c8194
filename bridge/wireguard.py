"""WireGuard on a site: the kernel module when the kernel has it, else wireguard-go.

Both are configured the same way, with wg(8) inside the site's namespace: `wg` talks
generic netlink to the kernel module and the UAPI socket to wireguard-go. Private keys
reach `wg` on stdin only, never on a command line or in a log.

wireguard-go runs in the foreground (`-f`) as our child, in its own session so a Ctrl-C at
the terminal does not take the tunnel down; its PID is written to `<run_dir>/<ifname>.pid`
so another process (e.g. `overcast lab down` after a crash) can stop it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import wgconfig

from bridge.netns import ApplyError, run, wait_for
from bridge.plan import WireGuardInterface, WireGuardPeer

# wireguard-go listens here; the directory is shared by every network namespace, which is
# why interface names must be unique across the machine.
UAPI_DIR = Path("/var/run/wireguard")
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

_children: dict[str, subprocess.Popen[bytes]] = {}


def uapi_socket(name: str) -> Path:
    return UAPI_DIR / f"{name}.sock"


def uapi_answers(name: str) -> bool:
    """True if a wireguard-go process is listening on `name`'s UAPI socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(uapi_socket(name)))
        except OSError:
            return False
    return True


def _pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _log_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.wireguard-go.log"


def start_wireguard_go(netns: str, name: str, run_dir: Path) -> int:
    """Start wireguard-go for interface `name` in `netns`; return its PID once it listens."""
    binary = shutil.which("wireguard-go")
    if binary is None:
        raise ApplyError(
            "this kernel has no WireGuard module and wireguard-go is not installed; "
            "apt-get install wireguard-go (or load the wireguard kernel module)"
        )
    if uapi_answers(name):
        raise ApplyError(
            f"interface name {name} is taken: another wireguard-go answers on "
            f"{uapi_socket(name)} (in some other namespace); use another interface prefix"
        )
    # A socket nobody answers on is left over from a killed wireguard-go.
    uapi_socket(name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _log_file(run_dir, name)
    env = os.environ | {
        "LOG_LEVEL": "error",
        # wireguard-go warns loudly on Linux; we only use it when the kernel has no module.
        "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, binary, "-f", name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _children[name] = proc
    # Reap it the moment it exits, whoever stops it (e.g. a lab teardown that kills every
    # process in the namespace), so no zombie lingers in a long-running caller.
    threading.Thread(target=proc.wait, name=f"reap-{name}", daemon=True).start()
    _pid_file(run_dir, name).write_text(f"{proc.pid}\n")
    wait_for(
        lambda: proc.poll() is not None or uapi_answers(name),
        START_TIMEOUT,
        f"wireguard-go to open {uapi_socket(name)}",
    )
    if proc.poll() is not None:
        _children.pop(name, None)
        _pid_file(run_dir, name).unlink(missing_ok=True)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise ApplyError(
            f"wireguard-go for {name} in namespace {netns} exited with code "
            f"{proc.returncode}: {' / '.join(tail) or 'no output'}; check that /dev/net/tun "
            "exists and that you are root"
        )
    return proc.pid


def wireguard_go_pid(name: str, run_dir: Path) -> int | None:
    """The PID of the wireguard-go serving `name`, if it is running."""
    proc = _children.get(name)
    if proc is not None:
        return proc.pid if proc.poll() is None else None
    try:
        pid = int(_pid_file(run_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_wireguard_go(pid, name) else None


def _is_wireguard_go(pid: int, name: str) -> bool:
    # The PID file may be stale and the PID reused: check it is still our wireguard-go.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and argv[0].endswith(b"wireguard-go") and name.encode() in argv[1:]


def stop_wireguard_go(name: str, run_dir: Path) -> bool:
    """Stop the wireguard-go serving `name` (it removes its interface and socket). True if
    one was running."""
    pid = wireguard_go_pid(name, run_dir)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not _running(name, pid), STOP_TIMEOUT, f"wireguard-go {pid} to exit")
        except ApplyError:
            _signal(pid, signal.SIGKILL)
            wait_for(lambda: not _running(name, pid), STOP_TIMEOUT, f"wireguard-go {pid} to die")
    _children.pop(name, None)
    _pid_file(run_dir, name).unlink(missing_ok=True)
    _log_file(run_dir, name).unlink(missing_ok=True)
    if not uapi_answers(name):
        uapi_socket(name).unlink(missing_ok=True)
    return pid is not None


def _running(name: str, pid: int) -> bool:
    proc = _children.get(name)
    if proc is not None:
        return proc.poll() is None  # also reaps our child
    return _is_wireguard_go(pid, name)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# -- configuration through wg(8) -------------------------------------------------------


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    allowed_ips: frozenset[str]
    latest_handshake: int  # seconds since the epoch; 0 = never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int  # 0 = off


@dataclass(frozen=True)
class InterfaceStatus:
    private_key: str  # compared with the wanted key, never shown
    listen_port: int
    peers: dict[str, PeerStatus]

    def __repr__(self) -> str:
        return f"InterfaceStatus(listen_port={self.listen_port}, peers={self.peers!r})"


def show(netns: str, name: str) -> InterfaceStatus:
    """The interface's live state, parsed from `wg show NAME dump` (see wg(8))."""
    out = run(
        netns,
        ["wg", "show", name, "dump"],
        what=f"reading WireGuard interface {name}",
        fix="check that it exists (ip link) and that wireguard-tools is installed",
    )
    lines = [line.split("\t") for line in out.splitlines() if line]
    private, _public, port, _fwmark = lines[0]
    peers = {}
    for key, _psk, endpoint, allowed, handshake, rx, tx, keepalive in lines[1:]:
        peers[key] = PeerStatus(
            public_key=key,
            endpoint=None if endpoint == "(none)" else endpoint,
            allowed_ips=frozenset() if allowed == "(none)" else frozenset(allowed.split(",")),
            latest_handshake=int(handshake),
            rx_bytes=int(rx),
            tx_bytes=int(tx),
            persistent_keepalive=0 if keepalive == "off" else int(keepalive),
        )
    return InterfaceStatus(private_key=private, listen_port=int(port), peers=peers)


def set_config(netns: str, name: str, config: str) -> None:
    """Make the interface match `config` (wg-quick style, holding the private key) exactly:
    `wg syncconf` leaves unchanged peers and their sessions alone."""
    run(
        netns,
        ["wg", "syncconf", name, "/dev/stdin"],
        what=f"configuring WireGuard interface {name}",
        fix="check the peers' public keys and endpoints in the plan",
        stdin=config,
    )


def render(wg: WireGuardInterface, private_key: str) -> str:
    """The wg(8) configuration file for `wg`. It holds the private key: never log it.

    Written with wgconfig, the same library an operator may use to read or edit the file.
    """
    conf = wgconfig.WGConfig()
    conf.add_attr(None, "PrivateKey", private_key)
    conf.add_attr(None, "ListenPort", wg.listen_port)
    for peer in wg.peers:
        conf.add_peer(peer.public_key, f"# {peer.site}")
        conf.add_attr(peer.public_key, "Endpoint", peer.endpoint)
        conf.add_attr(peer.public_key, "AllowedIPs", ", ".join(str(n) for n in peer.allowed_ips))
        if peer.persistent_keepalive:
            conf.add_attr(peer.public_key, "PersistentKeepalive", peer.persistent_keepalive)
    return "\n".join(conf.lines) + "\n"


def render_wg_quick(wg: WireGuardInterface, private_key: str | None) -> str:
    """`wg` as a wg-quick(8) file, for inspection; the private key only if given."""
    conf = wgconfig.WGConfig()
    conf.add_attr(None, "Address", f"{wg.address}/{wg.prefixlen}")
    conf.add_attr(None, "ListenPort", wg.listen_port)
    conf.add_attr(None, "MTU", wg.mtu)
    if private_key is not None:
        conf.add_attr(None, "PrivateKey", private_key)
    else:
        conf.add_attr(
            None, "# PrivateKey", "(left out; overcast bridge keys export --with-private-key)"
        )
    conf.add_attr(None, "# PublicKey", wg.public_key)
    for peer in wg.peers:
        conf.add_peer(peer.public_key, f"# {peer.site}")
        conf.add_attr(peer.public_key, "Endpoint", peer.endpoint)
        conf.add_attr(peer.public_key, "AllowedIPs", ", ".join(str(n) for n in peer.allowed_ips))
        if peer.persistent_keepalive:
            conf.add_attr(peer.public_key, "PersistentKeepalive", peer.persistent_keepalive)
    return "\n".join(conf.lines) + "\n"


def matches(status: InterfaceStatus, wg: WireGuardInterface, private_key: str) -> bool:
    """True if the live interface already is what `wg` describes.

    A peer that roams (its packets arrive from a new address, e.g. behind NAT) shows a
    different endpoint; re-applying then resets it to the configured one, which is the
    address the config says to use.
    """
    want = {
        p.public_key: (p.endpoint, frozenset(str(n) for n in p.allowed_ips), p.persistent_keepalive)
        for p in wg.peers
    }
    have = {
        p.public_key: (p.endpoint, p.allowed_ips, p.persistent_keepalive)
        for p in status.peers.values()
    }
    return (
        status.private_key == private_key and status.listen_port == wg.listen_port and want == have
    )


# -- live changes during key rotation --------------------------------------------------
# `wg syncconf` costs a fork and an exec per interface. While a key is rotated, traffic
# is lost from the moment one end switches keys until the other end accepts the new one,
# so those few changes go straight to wireguard-go's UAPI socket (a few hundred
# microseconds each; https://www.wireguard.com/xplatform/), or to `wg set` for the kernel
# module, all started before any is waited for.


@dataclass(frozen=True)
class LiveChange:
    """One change to a running interface: `uapi` lines for wireguard-go, `wg_set` the same
    as `wg set` arguments (kernel module), `stdin` carries a private key if any."""

    netns: str
    name: str
    uapi: tuple[str, ...]
    wg_set: tuple[str, ...]
    stdin: str | None = None


def hex_key(key: str) -> str:
    """A base64 WireGuard key as the UAPI writes it (lower-case hex)."""
    return base64.b64decode(key).hex()


def set_private_key(netns: str, name: str, private_key: str) -> LiveChange:
    return LiveChange(
        netns,
        name,
        (f"private_key={hex_key(private_key)}",),
        ("private-key", "/dev/stdin"),
        private_key,
    )


def add_peer(netns: str, name: str, peer: WireGuardPeer, allowed: bool) -> LiveChange:
    """Add or update `peer`; with `allowed`, its AllowedIPs replace whatever it had."""
    uapi = [f"public_key={hex_key(peer.public_key)}", f"endpoint={peer.endpoint}"]
    wg_set = ["peer", peer.public_key, "endpoint", peer.endpoint]
    if peer.persistent_keepalive:
        uapi.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        wg_set += ["persistent-keepalive", str(peer.persistent_keepalive)]
    if allowed:
        uapi += ["replace_allowed_ips=true", *(f"allowed_ip={n}" for n in peer.allowed_ips)]
        wg_set += ["allowed-ips", ",".join(str(n) for n in peer.allowed_ips)]
    return LiveChange(netns, name, tuple(uapi), tuple(wg_set))


def replace_peer(netns: str, name: str, old_key: str, peer: WireGuardPeer) -> LiveChange:
    """Move AllowedIPs from the peer `old_key` to `peer` and remove the old one, in one go."""
    add = add_peer(netns, name, peer, allowed=True)
    return LiveChange(
        netns,
        name,
        (*add.uapi, f"public_key={hex_key(old_key)}", "remove=true"),
        (*add.wg_set, "peer", old_key, "remove"),
    )


def remove_peer(netns: str, name: str, key: str) -> LiveChange:
    return LiveChange(
        netns, name, (f"public_key={hex_key(key)}", "remove=true"), ("peer", key, "remove")
    )


def apply_live(changes: list[LiveChange]) -> None:
    """Apply `changes` in order, as close together in time as the backends allow."""
    sockets: list[tuple[LiveChange, socket.socket]] = []
    procs: list[tuple[LiveChange, subprocess.Popen[str]]] = []
    try:
        # Connect first, so the changes themselves follow each other without delay.
        for change in changes:
            if uapi_answers(change.name):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(uapi_socket(change.name)))
                sockets.append((change, sock))
        by_change = {id(c): s for c, s in sockets}
        for change in changes:
            live = by_change.get(id(change))
            if live is not None:
                live.sendall(("set=1\n" + "".join(f"{x}\n" for x in change.uapi) + "\n").encode())
                continue
            proc = subprocess.Popen(
                ["ip", "netns", "exec", change.netns, "wg", "set", change.name, *change.wg_set],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((change, proc))
            assert proc.stdin is not None
            # A command that fails at once (no such namespace) may have closed its end: its
            # exit status and stderr, read below, say why.
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(change.stdin or "")
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        for change, sock in sockets:
            answer = _read_answer(sock)
            if answer != "errno=0":
                raise ApplyError(
                    f"changing {change.name} in namespace {change.netns} through its UAPI "
                    f"socket failed ({answer}); check the peer keys and endpoints"
                )
        for change, proc in procs:
            # Its stdin is closed already, which communicate() would try to flush.
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.wait(timeout=10)
            if proc.returncode != 0:
                raise ApplyError(
                    f"wg set {change.name} in namespace {change.netns} failed: {err.strip()}; "
                    "check the peer keys and endpoints"
                )
    finally:
        for _, sock in sockets:
            sock.close()


def _read_answer(sock: socket.socket) -> str:
    data = b""
    sock.settimeout(5.0)
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
