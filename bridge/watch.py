"""The site's path watcher: applies `bridge.failover`'s hold-down to the switch and counts
failovers. It runs beside the site's switch, never in the controller.

Routed (L3) segments follow the same paths: the watcher routes each prefix a peer
announces into the WireGuard interface of the network that carries the peer's traffic
on the switch (its L2 group's active path, or, for a peer that shares no L2 segment with
the site, the active one of its BFD-only tunnels), so a routed segment fails over and back
with the same BFD sessions and hold-down. With no path usable the route stays where it is.
Unlike the switch's own failover this one needs the watcher (like a router's BFD daemon
moving its static routes); a route moves within milliseconds of the OVSDB report.

It follows every path's BFD session through OVSDB (ovs-vswitchd writes Interface.
bfd_status as sessions change; the watcher blocks on the database's change notifications,
so it reacts within milliseconds), holds a path with `ovs-appctl bfd/set-forwarding PORT
false` over ovs-vswitchd's control socket, keeps a last resort forwarding with `... true`
(bridge.failover) and gives either back to BFD with `... normal`. Such a path is marked
`external_ids:overcast-path=held` (or `last-resort`) on its interface, which is how
`overcast bridge status` tells a held path from a standby one.

    watch = PathWatch(plan, hold_down_s=5.0, ovsdb="unix:/run/ovs/db.sock",
                      vswitchd=VswitchdControl(Path("/run/openvswitch")))
    watch.run(stop_event)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.failover import Bfd, HoldDown, Move, Role, all_paths, path_groups, roles
from bridge.plan import SitePlan
from controller.ovsdb import Ovsdb
from overcast.metrics import REGISTRY
from overcast.model import IPNetwork

log = logging.getLogger(__name__)

PATH_KEY = "overcast-path"  # Interface.external_ids key marking a path BFD does not decide
HELD, LAST_RESORT = "held", "last-resort"  # its values
# bfd/set-forwarding's argument for each: off, on, or as BFD says
FORWARDING = {HELD: "false", LAST_RESORT: "true", None: "normal"}
WAKE_S = 1.0  # re-read at least this often, in case a change notification was missed
# segment is "" for a BFD-only path (toward a peer reached by routed segments only).
LABELS = ["site", "segment", "peer", "underlay", "port"]

PATH_UP = Gauge(
    "overcast_bridge_path_up", "1 if the path's BFD session is up", LABELS, registry=REGISTRY
)
PATH_ROLE = Gauge(
    "overcast_bridge_path_role",
    "1 for the path's current role: active (carries traffic), standby, held (hold-down), down",
    [*LABELS, "role"],
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "overcast_bridge_failovers_total",
    "Times traffic toward a peer moved to a less preferred path (or lost every path)",
    ["site", "segment", "peer"],
    registry=REGISTRY,
)
FAILBACKS = Counter(
    "overcast_bridge_failbacks_total",
    "Times traffic toward a peer returned to a more preferred path after the hold-down",
    ["site", "segment", "peer"],
    registry=REGISTRY,
)


class _SinceLastFailover(Collector):
    """overcast_bridge_seconds_since_last_failover, computed when scraped."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str, str], float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "overcast_bridge_seconds_since_last_failover",
            "Seconds since traffic toward a peer last moved off its active path",
            labels=["site", "segment", "peer"],
        )
        now = time.monotonic()
        for labels, when in sorted(self.last.items()):
            family.add_metric(list(labels), now - when)
        yield family


SINCE_LAST_FAILOVER = _SinceLastFailover()
REGISTRY.register(SINCE_LAST_FAILOVER)


def group_name(segment: str | None) -> str:
    """How logs and `bridge status` name a path group: its segment, or the routed segments
    a BFD-only group serves."""
    return f"segment {segment}" if segment is not None else "routed segments"


class WatchError(Exception):
    """The watcher cannot reach the switch; the message names what and the fix."""


class Router:
    """The site namespace's main routing table (this process runs in the site's namespace)."""

    def replace(self, prefix: IPNetwork, interface: str) -> bool:
        """Route `prefix` into `interface` (ours: RTPROT_OVERCAST); False if it is gone."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        from bridge.apply import RTPROT_OVERCAST

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=interface)
            if not index:
                log.warning("cannot route %s via %s: no such interface", prefix, interface)
                return False
            try:
                ipr.route("replace", dst=str(prefix), oif=index[0], proto=RTPROT_OVERCAST)
            except NetlinkError as exc:
                log.warning("cannot route %s via %s: %s", prefix, interface, exc)
                return False
        return True


class VswitchdControl:
    """ovs-vswitchd's unixctl socket (`ovs-appctl -t`), found from its run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._client: Any = None  # ovs.unixctl.client.UnixctlClient (untyped)

    def socket(self) -> Path:
        pidfile = self.run_dir / "ovs-vswitchd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            raise WatchError(
                f"no ovs-vswitchd pid file in {self.run_dir}; give the switch's run directory "
                "(OVS_RUNDIR, /var/run/openvswitch by default)"
            ) from None
        return self.run_dir / f"ovs-vswitchd.{pid}.ctl"

    def set_forwarding(self, port: str, mode: str) -> bool:
        """`ovs-appctl bfd/set-forwarding PORT false|normal`. False if ovs-vswitchd refused
        (a port whose BFD session it has not set up yet); reconnects once if the socket
        fails (ovs-vswitchd restarted), then raises WatchError."""
        import ovs.unixctl.client

        for attempt in (1, 2):
            if self._client is None:
                error, client = ovs.unixctl.client.UnixctlClient.create(str(self.socket()))
                if error:
                    raise WatchError(
                        f"cannot reach ovs-vswitchd at {self.socket()}: {os.strerror(error)}; "
                        "is it running, and is --ovs-rundir its run directory?"
                    )
                self._client = client
            error, refused, _ = self._client.transact("bfd/set-forwarding", [port, mode])
            if not error:
                if refused is not None:
                    log.warning(
                        "ovs-vswitchd refused bfd/set-forwarding %s %s: %s", port, mode, refused
                    )
                return refused is None
            self.close()
            if attempt == 2:
                raise WatchError(f"lost ovs-vswitchd at {self.socket()}: {os.strerror(error)}")
        return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def bfd_of(status: dict[str, str]) -> Bfd:
    try:
        flaps = int(status.get("flap_count", "0"))
    except ValueError:
        flaps = 0
    return Bfd(status.get("state", ""), status.get("remote_state", ""), flaps)


class PathWatch:
    def __init__(
        self,
        plan: SitePlan,
        *,
        hold_down_s: float,
        ovsdb: str,
        vswitchd: VswitchdControl,
        router: Router | None = None,
    ) -> None:
        self.plan = plan
        self.router = router or Router()
        self.hold = HoldDown(path_groups(plan), hold_down_s)
        self.ovsdb = ovsdb
        self.vswitchd = vswitchd
        self.ports = [p.port for p in all_paths(self.hold.groups)]
        self.applied: dict[str, str | None] = {}  # port -> HELD, LAST_RESORT or None (BFD)
        # Routed prefixes that can move (announced by a peer reached over several networks).
        self.routes = tuple(r for r in plan.routes if len(r.interfaces) > 1)
        self.routed: dict[str, str] = {}  # prefix -> the WireGuard interface it is routed into

    def run(self, stop: threading.Event) -> None:
        with Ovsdb(self.ovsdb, wait_for_vswitchd=False) as db:
            # Clear what a previous watcher may have left held, then decide afresh.
            for port in self.ports:
                self._set(db, port, None, force=True)
            while not stop.is_set():
                self.step(db, time.monotonic())
                due = self.hold.next_release(time.monotonic())
                wait = WAKE_S if due is None else min(WAKE_S, max(due - time.monotonic(), 0))
                db.wait_for_change(wait)
        self.vswitchd.close()

    def step(self, db: Ovsdb, now: float) -> list[Move]:
        bfd = {port: bfd_of(status) for port, status in db.bfd_status(self.ports).items()}
        moves = self.hold.update(now, bfd)
        forced = self.hold.forced
        for port in self.ports:
            mark = HELD if port in self.hold.held else LAST_RESORT if port in forced else None
            self._set(db, port, mark)
        for move in moves:
            self._count(move, now)
        if self.routes:
            self._route(self.hold.roles(bfd))
        self._export(bfd)
        return moves

    def _route(self, role: Mapping[str, Role]) -> None:
        """Each movable prefix into the WireGuard interface of its peer's active path."""
        active: dict[str, str] = {}  # peer -> underlay of its active path (first group)
        for group in self.hold.groups:
            for path in group.paths:
                if role.get(path.port) == "active":
                    active.setdefault(group.peer, path.underlay)
        for r in self.routes:
            underlay = active.get(r.peer)
            interface = r.interface_on(underlay) if underlay else None
            if interface is None or self.routed.get(str(r.prefix)) == interface:
                continue  # no path usable: leave the route where it is
            if self.router.replace(r.prefix, interface):
                log.info(
                    "site %s segment %s: %s (%s) routed via %s (%s)",
                    self.plan.site,
                    r.segment,
                    r.prefix,
                    r.peer,
                    interface,
                    underlay,
                )
                self.routed[str(r.prefix)] = interface

    def _set(self, db: Ovsdb, port: str, mark: str | None, *, force: bool = False) -> None:
        if not force and port in self.applied and self.applied[port] == mark:
            return
        if not self.vswitchd.set_forwarding(port, FORWARDING[mark]):
            self.applied.pop(port, None)  # try again at the next step
            return
        if mark == LAST_RESORT:
            log.info("site %s: no path up, %s kept forwarding (last resort)", self.plan.site, port)
        self.applied[port] = mark
        db.set_external_id(port, PATH_KEY, mark)

    def _count(self, move: Move, now: float) -> None:
        labels = (self.plan.site, move.segment or "", move.peer)
        what = "failback" if move.failback else "failover"
        log.info(
            "site %s %s to %s: %s from %s to %s",
            self.plan.site,
            group_name(move.segment),
            move.peer,
            what,
            move.before or "no path",
            move.after or "no path",
        )
        if move.failback:
            FAILBACKS.labels(*labels).inc()
        elif move.before is not None:
            FAILOVERS.labels(*labels).inc()
            SINCE_LAST_FAILOVER.last[labels] = now

    def _export(self, bfd: dict[str, Bfd]) -> None:
        roles = self.hold.roles(bfd)
        for path in all_paths(self.hold.groups):
            labels = (self.plan.site, path.segment or "", path.peer, path.underlay, path.port)
            PATH_UP.labels(*labels).set(1 if bfd[path.port].up else 0)
            for role in ("active", "standby", "held", "down"):
                PATH_ROLE.labels(*labels, role).set(1 if roles[path.port] == role else 0)


def path_report(plan: SitePlan, db: Ovsdb) -> list[dict[str, Any]]:
    """Every multi-path peer of the site with each path's BFD state and role, as the switch
    and the watcher (its hold-down marks) have it now: what `bridge status` shows."""
    groups = path_groups(plan)
    ports = [p.port for p in all_paths(groups)]
    status = db.bfd_status(ports)
    bfd = {port: bfd_of(s) for port, s in status.items()}
    marks = {port: db.external_ids(port).get(PATH_KEY) for port in ports}
    role = roles(groups, bfd, {port for port, mark in marks.items() if mark == HELD})
    return [
        {
            "segment": g.segment,
            "peer": g.peer,
            "paths": [
                {
                    "port": p.port,
                    "underlay": p.underlay,
                    "state": "up" if bfd[p.port].up else "down",
                    "bfd": bfd[p.port].state or "unknown",
                    "bfd_remote": bfd[p.port].remote_state or "unknown",
                    "flaps": bfd[p.port].flap_count,
                    "role": role[p.port],
                    "last_resort": marks[p.port] == LAST_RESORT,
                }
                for p in g.paths
            ],
        }
        for g in groups
    ]
