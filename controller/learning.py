"""The MAC table: which host sits behind which access port of which site, per segment.

Pure: the app feeds it packet-ins and flow-removed events with the time (`now`), and plans
flows from what it holds. Like EVPN's MAC routes (RFC 7432 section 9), a MAC learned at one
site is installed at every site of its segment as "behind the tunnel to that site", so
unicast to it never floods across the WAN; the central controller already knows every
site, so no BGP is needed to spread it.

- learn: a new MAC on a learning access port (ports with configured hosts do not learn).
- move: a learned MAC seen at another port or site replaces the old place (RFC 7432
  section 15 handles mobility the same way: the newest place wins).
- static MACs (configured or tagged hosts) are never learned elsewhere: a host cannot draw
  another's traffic by spoofing its MAC.
- limits: per port and per segment; past one the port stops learning for `hold_down`
  seconds, and so it does past `packet_ins_per_port` packet-ins a second.
- expiry: the switch drops an idle source entry after `idle_timeout` and says so
  (OFPFF_SEND_FLOW_REM); `forget` then removes the MAC from every site.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from controller.config import Learning

Outcome = Literal["learned", "moved", "known", "static", "port_full", "segment_full"]


@dataclass(frozen=True)
class Host:
    """A learned MAC and where it is."""

    segment: str
    mac: str
    site: str
    port: str
    since: float  # when it was learned here (seconds, the caller's clock)


@dataclass
class _Budget:
    tokens: float
    at: float


@dataclass
class MacTable:
    limits: Learning
    # (segment, MAC) -> (site, port) of configured or tagged hosts: never learned.
    static: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    hosts: dict[tuple[str, str], Host] = field(default_factory=dict)
    # (site, port) -> when its hold-down ends; a held port forwards without learning.
    holds: dict[tuple[str, str], float] = field(default_factory=dict)
    _budgets: dict[tuple[str, str], _Budget] = field(default_factory=dict)
    # Hosts per (site, port) and per segment, kept with `hosts` so limits cost O(1).
    _at_port: dict[tuple[str, str], int] = field(default_factory=dict)
    _in_segment: dict[str, int] = field(default_factory=dict)

    def admit(self, site: str, port: str, now: float) -> bool:
        """One packet-in from `port`: within its rate (a token bucket of one second's
        worth)? If not, the port is held down and False returned."""
        rate = float(self.limits.packet_ins_per_port)
        budget = self._budgets.setdefault((site, port), _Budget(rate, now))
        budget.tokens = min(rate, budget.tokens + (now - budget.at) * rate)
        budget.at = now
        if budget.tokens >= 1:
            budget.tokens -= 1
            return True
        self.hold(site, port, now)
        return False

    def hold(self, site: str, port: str, now: float) -> None:
        self.holds[(site, port)] = now + self.limits.hold_down

    def release(self, now: float) -> list[tuple[str, str]]:
        """End the hold-downs that are over; the ports whose hold ended."""
        over = [k for k, until in self.holds.items() if until <= now]
        for key in over:
            del self.holds[key]
        return over

    def learn(
        self, segment: str, mac: str, site: str, port: str, now: float
    ) -> tuple[Outcome, Host | None]:
        """Record `mac` at (site, port); the outcome and, for a move, where it was."""
        key = (segment, mac)
        if key in self.static:
            return "static", None
        old = self.hosts.get(key)
        if old is not None and (old.site, old.port) == (site, port):
            return "known", old
        if self._at_port.get((site, port), 0) >= self.limits.max_macs_per_port:
            self.hold(site, port, now)
            return "port_full", None
        if old is None and self.count(segment) >= self.limits.max_macs_per_segment:
            self.hold(site, port, now)
            return "segment_full", None
        if old is not None:
            self._drop(old)
        self._add(Host(segment, mac, site, port, now))
        return ("moved", old) if old is not None else ("learned", None)

    def _add(self, host: Host) -> None:
        self.hosts[(host.segment, host.mac)] = host
        self._at_port[(host.site, host.port)] = self._at_port.get((host.site, host.port), 0) + 1
        self._in_segment[host.segment] = self._in_segment.get(host.segment, 0) + 1

    def _drop(self, host: Host) -> None:
        del self.hosts[(host.segment, host.mac)]
        self._at_port[(host.site, host.port)] -= 1
        self._in_segment[host.segment] -= 1

    def drop(self, keep: Callable[[Host], bool]) -> None:
        """Forget every host `keep` says no to (after a reload)."""
        for host in [h for h in self.hosts.values() if not keep(h)]:
            self._drop(host)

    def forget(self, segment: str, mac: str, site: str, port: str) -> Host | None:
        """The switch at `site` expired `mac` at `port`: forget it, unless it has moved."""
        host = self.hosts.get((segment, mac))
        if host is None or (host.site, host.port) != (site, port):
            return None
        self._drop(host)
        return host

    def forget_port(self, site: str, port: str) -> list[Host]:
        """A port left the fabric: everything learned behind it goes."""
        gone = [h for h in self.hosts.values() if (h.site, h.port) == (site, port)]
        for host in gone:
            self._drop(host)
        return gone

    def count(self, segment: str) -> int:
        return self._in_segment.get(segment, 0)

    def held_ports(self, site: str) -> set[str]:
        return {port for (s, port) in self.holds if s == site}


def static_hosts(
    switches: Iterable[tuple[str, Iterable[tuple[str, str, Iterable[str]]]]],
) -> dict[tuple[str, str], tuple[str, str]]:
    """(segment, MAC) -> (site, port) from (site, [(port, segment, macs)]) listings."""
    return {
        (segment, mac): (site, port)
        for site, ports in switches
        for port, segment, macs in ports
        for mac in macs
    }
