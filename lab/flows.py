"""Has our controller programmed every site switch? The lab asks the controller's own pure
pipeline what each switch should hold and compares it with what the switch reports."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.failover import all_paths, path_groups
from controller.fabric import derive
from controller.pipeline import LEARNED, plan_switch
from lab import netns, switch
from lab.build import CONTROLLER_LOG
from lab.plan import LabPlan, discovered
from overcast.config import OvercastConfig


@dataclass(frozen=True)
class SwitchState:
    site: str
    connected: bool
    flows: int  # flow entries the switch holds
    planned: int  # flow entries the pipeline plans for it
    unresolved: tuple[str, ...]  # fabric ports the switch does not have (yet)

    @property
    def programmed(self) -> bool:
        return self.connected and not self.unresolved and self.flows == self.planned


def states(config: OvercastConfig, plan: LabPlan) -> list[SwitchState]:
    fab = derive(config, discovered(plan))
    out = []
    for site in plan.sites:
        with switch.ovsdb(site) as db:
            ofports = db.ofports(site.bridge)
        want = plan_switch(config, fab, site.name, ofports)
        dump = switch.ofctl(site, "dump-flows")
        connected = switch.vsctl(site, "get", "Controller", site.bridge, "is_connected")
        out.append(
            SwitchState(
                site=site.name,
                connected=connected == "true",
                # Learned MACs come and go with the hosts; the rest is the config's.
                flows=sum(1 for line in dump.splitlines() if _configured(line)),
                planned=len(want.flows),
                unresolved=want.unresolved,
            )
        )
    return out


def wait_programmed(
    config: OvercastConfig, plan: LabPlan, timeout: float = 60.0
) -> list[SwitchState]:
    """Poll until every switch holds what the pipeline plans; raise naming the laggards."""
    last: list[SwitchState] = []

    def done() -> bool:
        nonlocal last
        last = states(config, plan)
        return all(s.programmed for s in last)

    if not netns.wait_until(done, timeout, interval=0.2):
        behind = ", ".join(
            f"{s.site} ({'connected' if s.connected else 'not connected'}, "
            f"{s.flows}/{s.planned} flows"
            + (f", missing ports {', '.join(s.unresolved)}" if s.unresolved else "")
            + ")"
            for s in last
            if not s.programmed
        )
        raise netns.LabCommandError(
            f"switches not programmed after {timeout:g}s: {behind}; "
            f"see {plan.state_dir / CONTROLLER_LOG}"
        )
    return last


def _configured(line: str) -> bool:
    """A dump-flows line of a flow that is not for a learned MAC."""
    match = re.search(r"cookie=(0x[0-9a-f]+)", line)
    return "actions=" in line and not (match and int(match.group(1), 16) & LEARNED)


def paths_down(plan: LabPlan) -> list[str]:
    """Every path (a tunnel port of a peer with several) whose BFD session is not up, as
    `site/port`."""
    down = []
    for site in plan.sites:
        ports = [p.port for p in all_paths(path_groups(site.dataplane))]
        if not ports:
            continue
        with switch.ovsdb(site) as db:
            status = db.bfd_status(ports)
        down += [f"{site.name}/{p}" for p in ports if status[p].get("state") != "up"]
    return down


def wait_paths_up(plan: LabPlan, timeout: float = 60.0) -> None:
    """Poll until every path's BFD session is up: until then a fast-failover group has no
    live bucket toward that peer and drops its traffic (fail closed)."""
    last: list[str] = []

    def done() -> bool:
        nonlocal last
        last = paths_down(plan)
        return not last

    if not netns.wait_until(done, timeout, interval=0.2):
        raise netns.LabCommandError(
            f"paths still down after {timeout:g}s (BFD not up): {', '.join(last)}"
        )
