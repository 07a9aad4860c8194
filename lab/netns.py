"""Thin shim over pyroute2 for the lab's namespaces, links and addresses, and over
`ip netns exec` for programs that must run inside a namespace. Every call is idempotent."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pyroute2 import NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from overcast.model import IPAddress

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class LabCommandError(RuntimeError):
    """A program the lab ran failed; the message carries its stderr."""


def all_names() -> list[str]:
    names: list[str] = netns.listnetns()
    return names


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run this thread in network namespace `ns`, then return to where it was: sockets
    opened meanwhile stay in `ns` (setns(2)), and can be used from anywhere afterwards."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(ns, flags=0)
        yield
    finally:
        netns.setns(saved)
        os.close(saved)


def exists(name: str) -> bool:
    return name in all_names()


def ensure(name: str) -> None:
    if not exists(name):
        netns.create(name)


def attach(name: str, pid: int) -> None:
    """Name the network namespace process `pid` lives in (`ip netns attach`), so the lab's
    code reaches a namespace someone else made (a Mininet node's) like its own."""
    if not exists(name):
        run(None, ["ip", "netns", "attach", name, str(pid)])


def run(
    ns: str | None,
    argv: Sequence[str],
    timeout: float = 30.0,
    check: bool = True,
    stdin: str | None = None,
) -> str:
    """Run `argv` inside namespace `ns` (the root namespace if None), feeding it `stdin`,
    and return stdout."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    try:
        proc = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabCommandError(f"{' '.join(argv)} (netns {ns}) took over {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise LabCommandError(
            f"{' '.join(argv)} (netns {ns}) failed with {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def link_exists(ns: str, ifname: str) -> bool:
    with NetNS(ns) as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, mtu: int) -> None:
    """A veth pair created directly with its ends in `ns_a` and `ns_b`, so it never
    appears in the root namespace, even for an instant."""
    with NetNS(ns_a) as ipr:
        if not ipr.link_lookup(ifname=if_a):
            ipr.link(
                "add", ifname=if_a, kind="veth", mtu=mtu, peer={"ifname": if_b, "net_ns_fd": ns_b}
            )
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        with NetNS(ns) as ipr:
            (index,) = ipr.link_lookup(ifname=ifname)
            ipr.link("set", index=index, mtu=mtu)


def bridge(ns: str, ifname: str) -> None:
    """A Linux bridge with no STP: it only ever joins point-to-point veths."""
    with NetNS(ns) as ipr:
        if not ipr.link_lookup(ifname=ifname):
            ipr.link("add", ifname=ifname, kind="bridge", br_stp_state=0)
        (index,) = ipr.link_lookup(ifname=ifname)
        ipr.link("set", index=index, state="up")


def enslave(ns: str, ifname: str, master: str) -> None:
    with NetNS(ns) as ipr:
        (index,) = ipr.link_lookup(ifname=ifname)
        (master_index,) = ipr.link_lookup(ifname=master)
        ipr.link("set", index=index, master=master_index, state="up")


def up(ns: str, ifname: str, address: Interface | None = None, mac: str | None = None) -> None:
    with NetNS(ns) as ipr:
        (index,) = ipr.link_lookup(ifname=ifname)
        if mac is not None:
            ipr.link("set", index=index, address=mac)
        if address is not None:
            have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
            if (str(address.ip), address.network.prefixlen) not in have:
                ipr.addr(
                    "add",
                    index=index,
                    address=str(address.ip),
                    prefixlen=address.network.prefixlen,
                    # The lab plans every address: duplicate address detection (RFC 4862
                    # section 5.4) would only keep an IPv6 one unusable for a second or two.
                    flags=IFA_F_NODAD if address.version == 6 else 0,
                )
        ipr.link("set", index=index, state="up")
    if ifname != "lo":
        up_loopback(ns)


def up_loopback(ns: str) -> None:
    with NetNS(ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def route(ns: str, destination: IPAddress, ifname: str) -> None:
    """An on-link host route: `destination` answers ARP/ND on `ifname`'s segment."""
    prefix = 32 if destination.version == 4 else 128
    with NetNS(ns) as ipr:
        (index,) = ipr.link_lookup(ifname=ifname)
        try:
            ipr.route("add", dst=f"{destination}/{prefix}", oif=index, scope=253)
        except NetlinkError as exc:
            if exc.code != 17:  # EEXIST: already there
                raise


def tx_checksum_off(ns: str, ifname: str) -> None:
    """veths on a userspace OVS carry partial checksums that nobody completes; TCP breaks
    until the sender fills them in (ARCHITECTURE.md: checksum offload)."""
    run(ns, ["ethtool", "-K", ifname, "tx", "off"])


def pids_in(ns: str) -> list[int]:
    pids: list[int] = netns.ns_pids().get(ns, [])
    return pids


def kill_all(namespaces: Sequence[str], grace: float = 5.0) -> None:
    """SIGTERM every process in `namespaces`, then SIGKILL whatever is left after `grace`."""
    wanted = set(namespaces)

    def alive() -> list[int]:
        found = netns.ns_pids()
        return [pid for ns, pids in found.items() if ns in wanted for pid in pids]

    terminate(alive(), grace)
    terminate(alive(), grace, signal.SIGKILL)


def terminate(pids: Sequence[int], grace: float, sig: signal.Signals = signal.SIGTERM) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    wait_until(lambda: not any(_alive(pid) for pid in pids), grace)


def stop(procs: Sequence[subprocess.Popen[Any]], grace: float = 10) -> None:
    """Stop child processes: SIGTERM to all, then SIGKILL to any still running after
    `grace` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def pid_from(pidfile: Path, program: str) -> int | None:
    """The pid in `pidfile` if that process is still `program` (pids get reused)."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    # /proc/<pid>/comm holds at most 15 characters.
    return pid if comm == program[:15] and _alive(pid) else None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), as /proc has them now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    # A zombie has exited; it only waits for its parent to reap it.
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...); [] once the
    process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            return f.read().rsplit(")", 1)[1].split()
    # ESRCH: it exited between the open and the read.
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []


def remove(name: str) -> None:
    if exists(name):
        netns.remove(name)
