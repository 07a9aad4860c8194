"""One Open vSwitch per site: its own ovsdb-server and ovs-vswitchd inside the site's
namespace, with the userspace datapath (no kernel module needed) and a private
run/db/log directory, so sites share nothing but the machine."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.fabric import MAC_TAG, SEGMENT_TAG
from controller.ovsdb import Ovsdb
from lab import netns
from lab.plan import LabPlan, SitePlan
from lab.registry import Registry

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")


def run_dir(site: SitePlan) -> Path:
    return site.dir / "run"


def db_socket(site: SitePlan) -> Path:
    return run_dir(site) / "db.sock"


def pidfile(site: SitePlan, daemon: str) -> Path:
    return run_dir(site) / f"{daemon}.pid"


def vswitchd_log(site: SitePlan) -> Path:
    return site.dir / "log" / "ovs-vswitchd.log"


def env(site: SitePlan) -> dict[str, str]:
    return os.environ | {
        "OVS_RUNDIR": str(run_dir(site)),
        "OVS_DBDIR": str(site.dir / "db"),
        "OVS_LOGDIR": str(site.dir / "log"),
    }


def pid_of(site: SitePlan, daemon: str) -> int | None:
    return netns.pid_from(pidfile(site, daemon), daemon)


def start(site: SitePlan, registry: Registry) -> None:
    """Start the site's ovsdb-server and ovs-vswitchd unless they already run."""
    for sub in ("run", "db", "log"):
        registry.file(site.dir / sub)
        (site.dir / sub).mkdir(parents=True, exist_ok=True)
    db = site.dir / "db" / "conf.db"
    if not db.exists():
        _run(site, ["ovsdb-tool", "create", str(db), str(SCHEMA)])
    if pid_of(site, "ovsdb-server") is None:
        registry.process(pidfile(site, "ovsdb-server"), "ovsdb-server")
        _run(
            site,
            [
                "ovsdb-server",
                str(db),
                f"--remote=punix:{db_socket(site)}",
                f"--pidfile={pidfile(site, 'ovsdb-server')}",
                f"--log-file={site.dir / 'log' / 'ovsdb-server.log'}",
                "--detach",
            ],
        )
        # One handler and one revalidator thread: the lab shares a small machine.
        vsctl(
            site,
            "--no-wait",
            "init",
            "--",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:n-handler-threads=1",
            "other_config:n-revalidator-threads=1",
        )
    if pid_of(site, "ovs-vswitchd") is None:
        registry.process(pidfile(site, "ovs-vswitchd"), "ovs-vswitchd")
        _run(
            site,
            [
                "ovs-vswitchd",
                f"unix:{db_socket(site)}",
                f"--pidfile={pidfile(site, 'ovs-vswitchd')}",
                f"--log-file={vswitchd_log(site)}",
                "--detach",
            ],
        )
        # Every BFD state change in the log (OVS rate-limits them to 20 a minute): a lab is
        # where one reads how a path failed and came back.
        _run(site, ["ovs-appctl", "-t", "ovs-vswitchd", "vlog/disable-rate-limit", "bfd"])


def _run(site: SitePlan, argv: list[str]) -> None:
    # --detach returns once the daemon is ready to serve, so nothing here needs to wait.
    proc = subprocess.run(
        ["ip", "netns", "exec", site.netns, *argv],
        env=env(site),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise netns.LabCommandError(
            f"{argv[0]} for site {site.name} failed: {proc.stderr.strip()} (see {site.dir / 'log'})"
        )


def vsctl(site: SitePlan, *args: str, timeout: float = 30.0) -> str:
    """ovs-vsctl against the site's database. The database socket is a file, so this works
    from any namespace. Without --no-wait it returns once ovs-vswitchd has applied the change."""
    argv = ["ovs-vsctl", f"--db=unix:{db_socket(site)}", f"--timeout={int(timeout)}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, check=False)
    if proc.returncode != 0:
        raise netns.LabCommandError(
            f"ovs-vsctl {' '.join(args)} at site {site.name}: {proc.stderr.strip()}"
        )
    return proc.stdout.strip()


def ofctl(site: SitePlan, command: str, *args: str) -> str:
    """ovs-ofctl through the bridge's management socket in the site's run dir (read-only
    use: the lab never adds flows itself)."""
    mgmt = run_dir(site) / f"{site.bridge}.mgmt"
    return netns.run(None, ["ovs-ofctl", "-O", "OpenFlow13", command, f"unix:{mgmt}", *args])


# -- the site bridge -----------------------------------------------------------------------


def ovsdb(site: SitePlan) -> Ovsdb:
    return Ovsdb(f"unix:{db_socket(site)}")


def ensure_bridge(lab: LabPlan, site: SitePlan) -> None:
    """The site bridge, taking forwarding only from our controller: fail_mode=secure (no
    learning-switch fallback when the controller is away), reaching it over the management
    network. The bridge's own port has no address, so OVS sets up no in-band control."""
    with ovsdb(site) as db:
        db.ensure_bridge(
            site.bridge,
            datapath_type=site.datapath,
            dpid=site.dpid,
            controllers=[lab.controller_target],
            fail_mode="secure",
        )


def ensure_port(site: SitePlan, port: str, segment: str, mac: str) -> None:
    """A host's port, tagged as a hypervisor tags a VM's: the controller reads its segment
    and the host's MAC from OVSDB (controller.fabric), so the lab writes no fabric."""
    with ovsdb(site) as db:
        db.ensure_port(site.bridge, port)
        db.set_external_id(port, SEGMENT_TAG, segment)
        db.set_external_id(port, MAC_TAG, mac)


@dataclass(frozen=True)
class BfdChange:
    """One BFD state change ovs-vswitchd logged (`start` turns its rate limit off)."""

    at: float  # epoch seconds, as the switch logged it
    port: str
    old: str
    new: str
    diagnostic: str  # the local diagnostic after the change (RFC 5880 section 4.1)


_BFD_CHANGE = re.compile(
    r'^(\S+)\|.*\|bfd.*\|INFO\|(\S+): BFD state change: (\w+)->(\w+) "[^"]*"->"([^"]*)"'
)


def bfd_changes(site: SitePlan) -> list[BfdChange]:
    """Every BFD state change in the site switch's log, oldest first."""
    out = []
    for line in vswitchd_log(site).read_text(errors="replace").splitlines():
        if m := _BFD_CHANGE.match(line):
            when = datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            out.append(BfdChange(when.timestamp(), m[2], m[3], m[4], m[5]))
    return out
