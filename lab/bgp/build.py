"""Apply a BGP lab plan: the peering LAN, the guard and every router, each recorded in the
lab's registry before it is made, so `overcast lab down` (and the scenario's own teardown,
`lab.build.down`) removes it all. Re-running `up` on the same lab id finishes the lab."""

from __future__ import annotations

import ipaddress
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from lab import build, names, netns
from lab.bgp import bird, guard
from lab.bgp.plan import (
    GUARD_ASREL,
    GUARD_STATUS_PORT,
    BgpLabPlan,
    GuardPlan,
    RouterPlan,
    Topology,
    asrel_text,
    guard_config,
    plan_bgp_lab,
)
from lab.registry import Registry

Progress = Callable[[str], None]
CONVERGE_TIMEOUT = 30.0


def _quiet(_: str) -> None:
    pass


def up(topology: Topology, state_dir: Path, progress: Progress = _quiet) -> BgpLabPlan:
    """Build `topology` into the lab whose state dir is `state_dir` (a lab of its own, or
    one with sites: the names cannot clash), each thing recorded in its registry first.
    The guard starts first (it listens; the routers dial it) and comes up while the routers
    are built. Returns once every daemon runs; `wait_converged` waits for BGP."""
    missing = [b for b in (bird.PROGRAM, "birdc") if shutil.which(b) is None]
    if missing:
        raise netns.LabCommandError(
            f"{' and '.join(missing)} not found: the BGP lab runs bird2 routers; install "
            "Debian's bird2 (`apt-get install bird2`, or `./dev demo`)"
        )
    plan = plan_bgp_lab(topology, state_dir.name, state_dir.parent)
    registry = Registry(state_dir)
    registry.open()
    progress(f"lab {plan.lab_id}: peering LAN {plan.lan_netns}")
    netns.ensure(registry.netns(plan.lan_netns))
    netns.bridge(plan.lan_netns, names.PEERING_BRIDGE)
    _attach(plan, registry, plan.guard.netns, plan.guard.lan_port, plan.guard.address)
    config_text, asrel = guard_config(plan, topology), asrel_text(topology)
    guard_started = _start_guard(plan.guard, registry, config_text, asrel, progress)
    for router in plan.routers:
        _attach(plan, registry, router.netns, router.lan_port, router.address)
        _start_router(router, registry, progress)
    guard_started()  # the routers retry their sessions to it every second until then
    return plan


def _attach(
    plan: BgpLabPlan, registry: Registry, ns: str, port: str, address: ipaddress.IPv4Interface
) -> None:
    """Namespace `ns` with its NIC on the peering LAN at `address`."""
    netns.ensure(registry.netns(ns))
    netns.veth(ns, names.PEERING_IF, plan.lan_netns, port, 1500)
    netns.enslave(plan.lan_netns, port, names.PEERING_BRIDGE)
    netns.up(ns, names.PEERING_IF, address)


def _start_guard(
    plan: GuardPlan, registry: Registry, config_text: str, asrel: str, progress: Progress
) -> Callable[[], None]:
    """Start `overcast guard watch`; returns the function that waits until it listens."""
    progress(
        f"lab: BGP guard AS{plan.asn} at {plan.address.ip} (netns {plan.netns}), peering with "
        + ", ".join(r.label for r in plan.neighbours)
    )
    registry.file(plan.dir).mkdir(parents=True, exist_ok=True)
    registry.file(plan.config).write_text(config_text)
    registry.file(plan.dir / GUARD_ASREL).write_text(asrel)
    return build.start_overcast(
        registry,
        plan.netns,
        plan.pidfile,
        plan.log,
        [
            *("guard", "watch", "--config", str(plan.config)),
            *("--status-port", str(GUARD_STATUS_PORT)),
        ],
        GUARD_STATUS_PORT,
        "the BGP guard",
        wait=False,
    )


def _start_router(router: RouterPlan, registry: Registry, progress: Progress) -> None:
    progress(
        f"lab: router {router.label} at {router.address.ip} (netns {router.netns}), sessions "
        + ", ".join(f"{s.name} ({s.relationship})" for s in router.sessions)
    )
    registry.file(router.dir).mkdir(parents=True, exist_ok=True)
    if netns.pid_from(router.pidfile, bird.PROGRAM) is not None:
        return
    registry.file(router.config).write_text(bird.config(router))
    registry.process(router.pidfile, bird.PROGRAM)
    registry.file(router.control_socket)
    # bird daemonises once its config parsed and its socket is open; a bad config fails here.
    netns.run(
        router.netns,
        [bird.PROGRAM, "-c", str(router.config), "-s", str(router.control_socket),
         "-P", str(router.pidfile)],
    )  # fmt: skip


def converged(plan: BgpLabPlan) -> str | None:
    """None once every session is Established, every guard peer sends the guard the routes
    the plan expects and the guard has taken them in; else what is still missing."""
    for router in plan.routers:
        down = [name for name, up in bird.established(router).items() if not up]
        if down:
            return f"{router.label}: sessions {', '.join(down)} not Established"
    for router in plan.guard.neighbours:
        have = bird.exported(router, "guard")
        if have != plan.expected[router.name]:
            return f"{router.label} sends the guard {sorted(map(str, have))}"
    status = guard.status(plan)
    feed = status["feeds"][0]
    if feed["peers_down"]:
        return f"the guard's sessions are down: {feed['peers_down']}"
    if feed["updates"] < plan.guard_routes():
        return f"the guard has {feed['updates']} of {plan.guard_routes()} routes"
    return None


def wait_converged(plan: BgpLabPlan, timeout: float = CONVERGE_TIMEOUT) -> float:
    """Wait until `converged`; return the seconds it took, or raise saying what is missing."""
    started = time.monotonic()
    missing: list[str | None] = [None]

    def done() -> bool:
        missing[0] = converged(plan)
        return missing[0] is None

    if not netns.wait_until(done, timeout, interval=0.2):
        raise netns.LabCommandError(f"BGP did not converge in {timeout:g} s: {missing[0]}")
    return time.monotonic() - started
