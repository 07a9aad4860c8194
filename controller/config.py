"""The `controller:` section of overcast.yaml: MAC learning limits, the ARP/ND proxy, ACLs.

    controller:
      learning: {idle_timeout: 300, max_macs_per_port: 64, max_macs_per_segment: 4096}
      proxy: {finance: false}       # per L2 segment; segments not listed: on
      acls:
        finance:
          default: allow            # stated explicitly: what a frame no rule matches gets
          rules:
            - {action: deny, ip_proto: tcp, tcp_dst: 23}
            - {action: allow, ipv4_src: 192.0.2.0/24}

Access ports (which switch port of which site is in which segment) are per site, under
`sites.<site>.switch.access`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from overcast.model import ConfigError, Model, Prefix

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def check_mac(value: str) -> str:
    """A host's MAC written as 02:00:00:00:00:01: unicast (IEEE 802: bit 0 of octet 0 clear)."""
    mac = str(value).strip().lower()
    if not _MAC_RE.match(mac):
        raise ValueError(f"{value!r} is not a MAC address; write it like 02:00:00:00:00:01")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{mac} is a group (multicast) address; hosts have unicast MACs")
    return mac


class Learning(Model):
    """Source-MAC learning on access ports (ports with static hosts do not learn)."""

    # A host silent this long is forgotten at every site (OpenFlow idle timeout, seconds).
    idle_timeout: int = Field(300, ge=10, le=65535)
    # Table limits: a host (or a MAC flood) cannot exhaust the switches' tables.
    max_macs_per_port: int = Field(64, ge=1, le=65536)
    max_macs_per_segment: int = Field(4096, ge=1, le=1_000_000)
    # Packet-ins a port may cause per second; past it the port forwards without learning
    # for `hold_down` seconds (the switch stops asking).
    packet_ins_per_port: int = Field(50, ge=1, le=100_000)
    hold_down: int = Field(10, ge=1, le=3600)
    # IP addresses learned from hosts' ARP and ND (for the proxy): a host cannot claim more
    # than `max_ips_per_mac`, nor a segment hold more than `max_ips_per_segment`; past one
    # the port stops learning for `hold_down` seconds, as for MACs.
    max_ips_per_mac: int = Field(16, ge=1, le=4096)
    max_ips_per_segment: int = Field(16384, ge=1, le=1_000_000)


Protocol = Literal["tcp", "udp", "icmp", "icmpv6"]
IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


class AclRule(Model):
    """One rule: every field given must match (L2-L4); first match wins."""

    action: Literal["allow", "deny"]
    eth_src: str | None = None
    eth_dst: str | None = None
    eth_type: int | None = Field(None, ge=0x600, le=0xFFFF)
    ip_src: Prefix | None = None
    ip_dst: Prefix | None = None
    ip_proto: Protocol | None = None
    src_port: int | None = Field(None, ge=0, le=65535)
    dst_port: int | None = Field(None, ge=0, le=65535)
    # Also match the reply direction (source and destination fields swapped).
    both_ways: bool = False

    @field_validator("eth_src", "eth_dst")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        mac = str(value).strip().lower()
        if not _MAC_RE.match(mac):
            raise ValueError(f"{value!r} is not a MAC address; write it like 02:00:00:00:00:01")
        return mac

    @model_validator(mode="after")
    def _layers(self) -> AclRule:
        if (self.src_port is not None or self.dst_port is not None) and self.ip_proto not in (
            "tcp",
            "udp",
        ):
            raise ValueError("src_port/dst_port need ip_proto: tcp or udp")
        family = {p.version for p in (self.ip_src, self.ip_dst) if p is not None}
        if len(family) > 1:
            raise ValueError("ip_src and ip_dst must be of one family (IPv4 or IPv6)")
        if (self.ip_proto == "icmp" and family == {6}) or (
            self.ip_proto == "icmpv6" and family == {4}
        ):
            raise ValueError(f"ip_proto {self.ip_proto} does not fit the addresses' family")
        return self

    def ip_version(self) -> int | None:
        """4 or 6 if the rule is about one IP family (by its addresses or ICMP type), else
        None: a rule on TCP or UDP ports alone covers both."""
        for prefix in (self.ip_src, self.ip_dst):
            if prefix is not None:
                return prefix.version
        return {"icmp": 4, "icmpv6": 6}.get(self.ip_proto or "")


class SegmentAcl(Model):
    default: Literal["allow", "deny"]
    rules: tuple[AclRule, ...] = ()


class ControllerConfig(Model):
    learning: Learning = Learning()
    # ARP requests (RFC 826) and IPv6 neighbour solicitations (RFC 4861) for a host the
    # controller knows are answered by the local switch, so these broadcasts and multicasts
    # stop crossing the WAN. Per L2 segment, on unless set to false here.
    proxy: dict[str, bool] = {}
    acls: dict[str, SegmentAcl] = {}

    def proxies(self, segment: str) -> bool:
        return self.proxy.get(segment, True)

    def problems(self, l2_segments: dict[str, Any]) -> list[ConfigError]:
        out = []
        known = ", ".join(sorted(l2_segments)) or "none"
        for key, entries, what in (
            ("proxy", self.proxy, "the proxy is set"),
            ("acls", self.acls, "ACLs are"),
        ):
            out += [
                ConfigError(
                    f"controller.{key}.{name}",
                    f"no L2 segment {name!r}; {what} per L2 segment: {known}",
                )
                for name in entries
                if name not in l2_segments
            ]
        return out
