"""Throwaway network namespaces, veths and a userspace Open vSwitch for controller tests.

Everything is named with a per-run prefix (`oc` + 6 hex digits) so tests of other parts
running on the same machine never collide, and everything is removed in `close()`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

from controller.ovsdb import Ovsdb
from overcast.fabric import Fabric

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def unique_prefix() -> str:
    return f"oc{secrets.token_hex(3)}"


def sh(*cmd: str, netns: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run `cmd` (inside `netns` if given); raise with its stderr if it fails."""
    argv = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def wait_for(done: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Namespaces:
    """Creates namespaces and veth pairs; `close()` deletes them all (veths go with them)."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def add(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        # IPv4 only: a quiet namespace sends no IPv6 router solicitations or MLD reports,
        # so packet counters count only the test's own traffic.
        for scope in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1", netns=name)
        sh("ip", "link", "set", "lo", "up", netns=name)
        return name

    def veth(self, a: str, a_ns: str, b: str, b_ns: str) -> None:
        """A veth pair with end `a` in `a_ns` and end `b` in `b_ns`, both up."""
        sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", b, "netns", b_ns)
        sh("ip", "link", "set", a, "up", netns=a_ns)
        sh("ip", "link", "set", b, "up", netns=b_ns)

    def management_link(self, prefix: str, i: int, switch_ns: str, ctl_ns: str) -> str:
        """Switch `i`'s /30 toward the controller's namespace; returns the OpenFlow target
        the switch dials (the controller's end)."""
        switch_ip, ctl_ip = f"198.51.100.{4 * i + 2}", f"198.51.100.{4 * i + 1}"
        self.veth(f"{prefix}m{i}", switch_ns, f"{prefix}c{i}", ctl_ns)
        sh("ip", "addr", "add", f"{switch_ip}/30", "dev", f"{prefix}m{i}", netns=switch_ns)
        sh("ip", "addr", "add", f"{ctl_ip}/30", "dev", f"{prefix}c{i}", netns=ctl_ns)
        return f"tcp:{ctl_ip}:6653"

    def host(self, name: str, switch_ns: str, port: str, mac: str, address: str) -> str:
        """Namespace `name` with eth0 (`mac`, `address`) wired to `port` in `switch_ns`."""
        ns = self.add(name)
        self.veth(port, switch_ns, "eth0", ns)
        sh("ip", "link", "set", "eth0", "address", mac, netns=ns)
        sh("ip", "addr", "add", address, "dev", "eth0", netns=ns)
        # Userspace OVS does not complete partial checksums from a veth (ARCHITECTURE.md).
        sh("ethtool", "-K", "eth0", "tx", "off", netns=ns)
        return ns

    def close(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.created.clear()


class OvsSwitch:
    """ovsdb-server + ovs-vswitchd (userspace datapath) running inside namespace `netns`."""

    def __init__(self, netns: str, *, start_vswitchd: bool = True) -> None:
        self.netns = netns
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{netns}-ovs-"))
        self.env = {k: str(self.rundir) for k in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR")}
        self.db_sock = self.rundir / "db.sock"
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            sh("ovsdb-tool", "create", str(self.rundir / "conf.db"), str(SCHEMA))
            self._start(
                "ovsdb-server",
                str(self.rundir / "conf.db"),
                f"--remote=punix:{self.db_sock}",
                f"--unixctl={self.rundir / 'ovsdb-server.ctl'}",
                f"--log-file={self.rundir / 'ovsdb-server.log'}",
            )
            wait_for(self.db_sock.exists, f"ovsdb-server socket {self.db_sock}")
            if start_vswitchd:
                self.start_vswitchd()
        except BaseException:
            self.close()
            raise

    @property
    def remote(self) -> str:
        return f"unix:{self.db_sock}"

    def start_vswitchd(self) -> None:
        ctl = self.rundir / "ovs-vswitchd.ctl"
        self._start(
            "ovs-vswitchd",
            self.remote,
            f"--unixctl={ctl}",
            f"--log-file={self.rundir / 'ovs-vswitchd.log'}",
        )
        wait_for(ctl.exists, "ovs-vswitchd control socket")

    def ofctl(self, *args: str) -> str:
        return sh("ovs-ofctl", "-O", "OpenFlow13", *args, netns=self.netns, env=self.env)

    def _start(self, *argv: str) -> None:
        cmd = ["ip", "netns", "exec", self.netns, *argv]
        log = (self.rundir / f"{argv[0]}.out").open("wb")
        self.procs.append(
            subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.rundir, ignore_errors=True)


def switch_mesh(
    namespaces: Namespaces,
    prefix: str,
    sites: Sequence[str],
    switches: dict[str, OvsSwitch],
    tunnel: Callable[[str], str],
) -> tuple[str, str, list[str]]:
    """A controller namespace and, per site, a userspace OVS in a namespace of its own
    (put in `switches`, which the caller closes, even if this fails half-way), every pair
    linked by a veth "tunnel" named at each end `tunnel(peer)`, as the bridge plan names
    VXLAN ports. Each switch's bridge holds its tunnel ports, with a datapath id the config
    does not give (the controller reads it from OVSDB), and the switch has a management link
    to the controller's namespace. Returns that namespace, the bridge, and each switch's
    OpenFlow target for `connect`."""
    ctl_ns = namespaces.add(f"{prefix}-ctl")
    for site in sites:
        switches[site] = OvsSwitch(namespaces.add(f"{prefix}-{site}"))
    bridge = f"{prefix}br"
    for a, b in combinations(sites, 2):
        namespaces.veth(tunnel(b), switches[a].netns, tunnel(a), switches[b].netns)
    targets = []
    for i, site in enumerate(sites):
        targets.append(namespaces.management_link(prefix, i, switches[site].netns, ctl_ns))
        with Ovsdb(switches[site].remote) as db:
            db.ensure_bridge(bridge, dpid=0xD000 + i)
            for peer in sites:
                if peer != site:
                    db.ensure_port(bridge, tunnel(peer))
    return ctl_ns, bridge, targets


def connect(switches: dict[str, OvsSwitch], bridge: str, targets: list[str]) -> None:
    """Point each `switch_mesh` switch at the controller: once it listens, so that each
    connects on its first try."""
    for i, switch in enumerate(switches.values()):
        with Ovsdb(switch.remote) as db:
            db.ensure_bridge(bridge, dpid=0xD000 + i, controllers=[targets[i]])


def ping(netns: str, address: str, count: int = 3) -> bool:
    """True if all `count` echo requests from `netns` to `address` were answered within 5 s."""
    argv = ["ip", "netns", "exec", netns, "ping", "-n", "-q", "-i", "0.2", "-c", str(count)]
    return (
        subprocess.run([*argv, "-w", "5", address], capture_output=True, timeout=30).returncode == 0
    )


class ControllerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], netns: str, workdir: Path) -> None:
        self.proc, self.netns = proc, netns
        self.log = workdir / "controller.log"
        self.config = workdir / "overcast.yaml"
        self.fabric = workdir / "fabric.json"

    def wait_log(self, text: str, what: str, count: int = 1, timeout: float = 15.0) -> None:
        wait_for(lambda: self.log.read_text().count(text) >= count, what, timeout)


@contextmanager
def controller(
    netns: str, config: str, fabric: Fabric | None, workdir: Path, listen: str, *extra: str
) -> Iterator[ControllerProcess]:
    """`overcast controller run` in `netns`, killed on exit; yields once it listens. With
    no `fabric` the controller derives it (config, OVSDB given by --ovsdb in `extra`)."""
    (workdir / "overcast.yaml").write_text(config)
    given: list[str] = []
    if fabric is not None:
        (workdir / "fabric.json").write_text(fabric.model_dump_json(indent=2))
        given = ["--fabric", str(workdir / "fabric.json")]
    argv = [
        *("ip", "netns", "exec", netns, sys.executable, "-m", "overcast", "controller", "run"),
        *("--config", str(workdir / "overcast.yaml"), *given),
        *("--listen", listen, *extra),
    ]
    with (workdir / "controller.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    ctl = ControllerProcess(proc, netns, workdir)
    try:
        # Starting takes seconds of imports; on a loaded 2-core machine, tens of seconds.
        ctl.wait_log("controller listening", "the controller to listen", timeout=60)
        yield ctl
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
