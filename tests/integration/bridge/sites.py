"""Helpers for bridge integration tests: the test config, commands in namespaces, polling."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.keys import KeyStore
from bridge.plan import SitePlan, plan_site
from overcast.config import OvercastConfig

CONFIG = """\
sites:
  hq:     {role: enterprise, underlay: 192.0.2.1}
  branch: {role: enterprise, underlay: 192.0.2.2}
  cloud:  {role: provider, underlay: 192.0.2.3}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def links(ns: str) -> dict[str, dict[str, object]]:
    out = sh("ip", "-d", "-j", "-n", ns, "link", "show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def eventually(what: str, condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@dataclass
class Lab:
    config: OvercastConfig
    keys: KeyStore
    run_dir: Path
    prefix: str
    netns: dict[str, str]

    def plan(self, site: str, config: OvercastConfig | None = None) -> SitePlan:
        config = config or self.config
        return plan_site(config, site, self.keys.ensure_all(config.sites), prefix=self.prefix)

    def ping(self, site: str, address: object, *extra: str) -> bool:
        cmd = ("ping", "-n", "-c", "1", "-W", "1", *extra, str(address))
        return in_ns(self.netns[site], *cmd, check=False).returncode == 0

    def full_frames_cross(self, plans: dict[str, SitePlan], a: str, b: str) -> None:
        """A full inner-MTU frame with DF crosses the VXLAN tunnel a -> b inside WireGuard;
        one byte more does not fit. Test addresses go on the two ends and are removed."""
        there = next(t for t in plans[a].tunnels() if t.peer == b)
        back = next(t for t in plans[b].tunnels() if t.peer == a)
        in_ns(self.netns[a], "ip", "addr", "add", "198.51.100.1/30", "dev", there.name)
        in_ns(self.netns[b], "ip", "addr", "add", "198.51.100.2/30", "dev", back.name)
        payload = there.mtu - 28  # IPv4 20 + ICMP 8
        eventually("ping across VXLAN", lambda: self.ping(a, "198.51.100.2"))
        assert self.ping(a, "198.51.100.2", "-M", "do", "-s", str(payload))
        assert not self.ping(a, "198.51.100.2", "-M", "do", "-s", str(payload + 1))
        in_ns(self.netns[a], "ip", "addr", "flush", "dev", there.name)
        in_ns(self.netns[b], "ip", "addr", "flush", "dev", back.name)
