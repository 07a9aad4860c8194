"""The one `overcast.yaml`: sites, providers, segments, and each part's own section.

`load()` returns an immutable `OvercastConfig` or raises `InvalidConfig` carrying *every*
problem found, each naming its path and the fix. Schema errors come from pydantic; the
cross-checks below catch what no single field can see (unknown sites, reused VNIs, ...).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from attest.config import AttestConfig
from bgp_guard.config import GuardConfig
from bridge.config import BridgeConfig
from controller.config import ControllerConfig, check_mac
from gateway.config import GatewayConfig
from lab.config import LabConfig
from overcast.configfile import InvalidConfig as InvalidConfig  # where callers look for it
from overcast.configfile import cross_checked, locate, mapping, read, validate_entries
from overcast.model import ConfigError, IPAddress, Model, Name, Prefix, parse_underlay
from overcast.yamlsrc import parse

VNI_MAX = 2**24 - 1  # RFC 7348 section 5: 24-bit VXLAN Network Identifier


def _access_port(value: Any) -> Any:
    return {"segment": value} if isinstance(value, str) else value


class AccessPort(Model):
    """A switch port facing hosts (untagged), in one segment. `hosts`: MACs known to sit
    behind it; they are forwarded to without learning, and the port admits only them."""

    segment: Name
    hosts: tuple[Annotated[str, AfterValidator(check_mac)], ...] = ()


class Switch(Model):
    """The site's Open vSwitch bridge."""

    bridge: Name = "br-overcast"
    # "netdev" is the userspace datapath: it needs no kernel module (see ARCHITECTURE.md).
    datapath: Literal["netdev", "system"] = "netdev"
    # The bridge's OpenFlow datapath id; default: the site's position in `sites:` plus one.
    dpid: int | None = Field(None, ge=1, le=2**64 - 1)
    # Where the controller reads the bridge's ports (OVSDB, RFC 7047), e.g.
    # "unix:/var/run/openvswitch/db.sock" or "tcp:192.0.2.10:6640". A port whose Interface
    # has external_ids:overcast-segment=NAME (set by a hypervisor hook) joins that segment.
    ovsdb: str | None = None
    # Interface name -> its segment ("eth1: finance") or {segment, hosts: [MAC, ...]}.
    access: dict[str, Annotated[AccessPort, BeforeValidator(_access_port)]] = {}


# The one underlay network of a config without an `underlays:` section.
DEFAULT_UNDERLAY = "underlay"
MAX_UNDERLAYS = 8  # each adds a WireGuard interface and VXLAN port range per site
MAX_FAILOVER_SITES = 127  # controller.pipeline.MAX_FAILOVER_PEER_INDEX + 1


class Underlay(Model):
    """A network the sites reach each other over: one ISP, carrier or cloud interconnect.
    Sites on two of them get two paths, and a segment survives the loss of either."""

    description: str = ""


class Site(Model):
    role: Literal["enterprise", "provider"]
    # One address (the site is on the config's one underlay network) or, with `underlays:`,
    # an address per named network: {isp-a: 192.0.2.1, isp-b: 198.51.100.1}.
    underlay: Annotated[IPAddress | dict[str, IPAddress], BeforeValidator(parse_underlay)]
    provider: Name | None = None
    underlay_mtu: int = Field(1500, ge=1280, le=9216)
    wireguard_port: int = Field(51820, ge=1, le=65535)
    switch: Switch = Switch()


class Provider(Model):
    """A cloud vendor. Provider sites name one, so two vendors can carry the same segment."""

    description: str = ""


class L2Segment(Model):
    """An Ethernet segment stretched between sites with VXLAN inside WireGuard."""

    mode: Literal["l2"]
    vni: int = Field(ge=1, le=VNI_MAX)
    # 0 and 4095 are reserved by IEEE 802.1Q.
    vlan: int = Field(ge=1, le=4094)
    sites: tuple[Name, ...]


class L3Segment(Model):
    """Routed prefixes reachable from every listed site.

    `prefixes` is the segment's address space; `announce` says which site hosts which part
    of it (site -> prefixes inside `prefixes`). Each site routes the prefixes the others
    announce into its WireGuard tunnel, and WireGuard's AllowedIPs bind each prefix to the
    peer that announced it. A site that announces nothing still reaches the others.
    """

    mode: Literal["l3"]
    prefixes: tuple[Prefix, ...] = Field(min_length=1)
    sites: tuple[Name, ...]
    announce: dict[Name, tuple[Prefix, ...]] = {}


Segment = Annotated[L2Segment | L3Segment, Field(discriminator="mode")]


class OvercastConfig(Model):
    # In order of preference: traffic takes the first network two sites share, and moves to
    # the next only while that one is down (see bridge.failover).
    underlays: dict[Name, Underlay] = Field({}, max_length=MAX_UNDERLAYS)
    sites: dict[Name, Site]
    providers: dict[Name, Provider] = {}
    segments: dict[Name, Segment] = {}
    guard: GuardConfig = GuardConfig()
    gateway: GatewayConfig | None = None
    lab: LabConfig = LabConfig()
    bridge: BridgeConfig = BridgeConfig()
    controller: ControllerConfig = ControllerConfig()
    # Attested join (attest/): absent, no site has to prove its state to get its tunnels.
    attest: AttestConfig | None = None

    def dpid(self, site: str) -> int:
        """The OpenFlow datapath id of `site`'s bridge."""
        return self.sites[site].switch.dpid or list(self.sites).index(site) + 1

    def l2_segments(self) -> dict[str, L2Segment]:
        return {n: s for n, s in self.segments.items() if isinstance(s, L2Segment)}

    def segments_at(self, site: str) -> dict[str, L2Segment | L3Segment]:
        return {n: s for n, s in self.segments.items() if site in s.sites}

    def underlay_names(self) -> list[str]:
        """The underlay networks in order of preference."""
        return list(self.underlays) or [DEFAULT_UNDERLAY]

    def addresses(self, site: str) -> dict[str, IPAddress]:
        """`site`'s address on each underlay network it is on, in order of preference."""
        given = self.sites[site].underlay
        if not isinstance(given, dict):
            return {self.underlay_names()[0]: given}
        return {n: given[n] for n in self.underlay_names() if n in given}

    def shared_underlays(self, a: str, b: str) -> list[str]:
        """The networks both sites are on, in order of preference: one path each."""
        there = self.addresses(b)
        return [n for n in self.addresses(a) if n in there]


# -- loading -----------------------------------------------------------------------------


def load(path: str | Path) -> OvercastConfig:
    return loads(read(path), source=str(path))


def loads(text: str, source: str = "<config>") -> OvercastConfig:
    doc, data = mapping(text, source, "sites")
    config, errors, removed = validate_entries(data, doc, OvercastConfig.model_validate)
    return cross_checked(source, doc, config, errors, removed, cross_check)


def located_warnings(config: OvercastConfig, text: str) -> list[ConfigError]:
    """`warnings(config)` with line numbers from the config's text."""
    doc = parse(text)
    return [locate(w, doc) for w in warnings(config)]


# -- cross-checks ------------------------------------------------------------------------


def cross_check(config: OvercastConfig) -> list[ConfigError]:
    return [
        *_check_sites(config),
        *_check_segment_sites(config),
        *_check_switches(config),
        *config.controller.problems(config.l2_segments()),
        *_check_unique_vni(config),
        *_check_vlans(config),
        *_check_prefix_overlap(config),
        *_check_announcements(config),
        *config.guard.problems(),
        *config.bridge.problems(config),
        *(config.attest.problems(list(config.sites)) if config.attest else ()),
    ]


def _check_sites(config: OvercastConfig) -> Iterator[ConfigError]:
    if len(config.underlays) > 1 and len(config.sites) > MAX_FAILOVER_SITES:
        yield ConfigError(
            "sites",
            f"{len(config.sites)} sites; with several underlay networks at most "
            f"{MAX_FAILOVER_SITES} (fast-failover group numbering); split the config",
        )
    seen: dict[Any, str] = {}
    for name, site in config.sites.items():
        yield from _check_underlay(config, name)
        for network, address in config.addresses(name).items():
            where = f"sites.{name}.underlay" + (
                f".{network}" if isinstance(site.underlay, dict) else ""
            )
            if address in seen:
                yield ConfigError(
                    where,
                    f"{address} is already used by sites.{seen[address]}; every site needs "
                    "its own underlay address",
                )
            seen.setdefault(address, name)
        if site.role == "provider":
            if site.provider is None:
                if config.providers:
                    known = ", ".join(sorted(config.providers))
                    yield ConfigError(
                        f"sites.{name}.provider",
                        f"provider sites must name their provider; one of: {known}",
                    )
            elif site.provider not in config.providers:
                yield ConfigError(
                    f"sites.{name}.provider",
                    f"unknown provider {site.provider!r}; add it under 'providers:' "
                    f"or use one of: {', '.join(sorted(config.providers)) or '(none defined)'}",
                )
        elif site.provider is not None:
            yield ConfigError(
                f"sites.{name}.provider",
                "only sites with 'role: provider' run at a provider; remove this key",
            )


def _check_underlay(config: OvercastConfig, name: str) -> Iterator[ConfigError]:
    given = config.sites[name].underlay
    where = f"sites.{name}.underlay"
    if not isinstance(given, dict):
        if config.underlays:
            first = next(iter(config.underlays))
            yield ConfigError(
                where,
                f"with 'underlays:' defined, name the network of each address, e.g. "
                f"underlay: {{{first}: {given}}}",
            )
        return
    known = ", ".join(config.underlays) or "(none defined)"
    for network in given:
        if network not in config.underlays:
            yield ConfigError(
                f"{where}.{network}",
                f"unknown underlay network {network!r}; define it under 'underlays:' (in "
                f"order of preference) or use one of: {known}",
            )


def _check_segment_sites(config: OvercastConfig) -> Iterator[ConfigError]:
    for name, seg in config.segments.items():
        for i, site in enumerate(seg.sites):
            if site not in config.sites:
                yield ConfigError(
                    f"segments.{name}.sites.{i}",
                    f"unknown site {site!r}; define it under 'sites:' or use one of: "
                    f"{', '.join(sorted(config.sites))}",
                )
            elif seg.sites.index(site) != i:
                yield ConfigError(
                    f"segments.{name}.sites.{i}", f"site {site!r} is listed twice; remove one"
                )
        if len(set(seg.sites)) < 2:
            yield ConfigError(
                f"segments.{name}.sites",
                "a segment joins at least two sites; list two or more",
            )
        for a, b in _site_pairs(config, seg.sites):
            if not config.shared_underlays(a, b):
                yield ConfigError(
                    f"segments.{name}.sites",
                    f"sites {a} ({', '.join(config.addresses(a))}) and {b} "
                    f"({', '.join(config.addresses(b))}) share no underlay network, so there "
                    "is no path between them; give one an address on the other's network",
                )


def _site_pairs(config: OvercastConfig, sites: Iterable[str]) -> list[tuple[str, str]]:
    known = [s for s in dict.fromkeys(sites) if s in config.sites and _underlay_ok(config, s)]
    return list(itertools.combinations(known, 2))


def _underlay_ok(config: OvercastConfig, site: str) -> bool:
    # A site whose underlay is itself wrong has its own error; no path errors on top.
    given = config.sites[site].underlay
    if isinstance(given, dict):
        return all(n in config.underlays for n in given)
    return not config.underlays


def warnings(config: OvercastConfig) -> list[ConfigError]:
    """What is valid but probably not meant: with named underlays, a segment whose sites
    share only one network has no second path, so no failover."""
    if not config.underlays:
        return []
    out = []
    for name, seg in config.segments.items():
        for a, b in _site_pairs(config, seg.sites):
            shared = config.shared_underlays(a, b)
            if len(shared) == 1:
                out.append(
                    ConfigError(
                        f"segments.{name}.sites",
                        f"sites {a} and {b} share only underlay {shared[0]}: traffic between "
                        "them has no failover path; give both an address on a second network",
                    )
                )
    return out


def _check_unique_vni(config: OvercastConfig) -> Iterator[ConfigError]:
    owner: dict[int, str] = {}
    for name, seg in config.l2_segments().items():
        if seg.vni in owner:
            yield ConfigError(
                f"segments.{name}.vni",
                f"{seg.vni} is already used by segments.{owner[seg.vni]}; pick an unused VNI",
            )
        owner.setdefault(seg.vni, name)


def _check_vlans(config: OvercastConfig) -> Iterator[ConfigError]:
    # A VLAN id is local to a site's switch: two segments may reuse it only at disjoint sites.
    segs = list(config.l2_segments().items())
    for (a_name, a), (b_name, b) in itertools.combinations(segs, 2):
        shared = sorted(set(a.sites) & set(b.sites))
        if a.vlan == b.vlan and shared:
            yield ConfigError(
                f"segments.{b_name}.vlan",
                f"VLAN {b.vlan} is already used by segments.{a_name} at site "
                f"{', '.join(shared)}; pick another VLAN",
            )


def _check_prefix_overlap(config: OvercastConfig) -> Iterable[ConfigError]:
    from netaddr import IPNetwork

    owned: list[tuple[Any, str]] = []
    for name, seg in config.segments.items():
        if not isinstance(seg, L3Segment):
            continue
        for i, prefix in enumerate(seg.prefixes):
            net = IPNetwork(str(prefix))
            for other, where in owned:
                if net.version == other.version and (net in other or other in net):
                    yield ConfigError(
                        f"segments.{name}.prefixes.{i}",
                        f"{prefix} overlaps {other} in {where}; L3 prefixes must not overlap",
                    )
            owned.append((net, f"segments.{name}"))


def _check_announcements(config: OvercastConfig) -> Iterator[ConfigError]:
    for name, seg in config.segments.items():
        if not isinstance(seg, L3Segment):
            continue
        seen: list[tuple[Any, str]] = []
        for site, prefixes in seg.announce.items():
            if site not in seg.sites:
                yield ConfigError(
                    f"segments.{name}.announce.{site}",
                    f"site {site!r} is not in this segment's sites; add it to "
                    f"segments.{name}.sites or remove its announcement",
                )
            for i, prefix in enumerate(prefixes):
                at = f"segments.{name}.announce.{site}.{i}"
                if not any(
                    prefix.version == p.version and prefix.subnet_of(p)  # type: ignore[arg-type]
                    for p in seg.prefixes
                ):
                    yield ConfigError(
                        at,
                        f"{prefix} is outside the segment's prefixes "
                        f"({', '.join(map(str, seg.prefixes))}); announce a part of them "
                        "or add it to the segment's prefixes",
                    )
                for other, where in seen:
                    if prefix.version == other.version and prefix.overlaps(other):
                        yield ConfigError(
                            at,
                            f"{prefix} overlaps {other} announced by {where}; a prefix is "
                            "hosted at one site only (move it, do not announce it twice)",
                        )
                seen.append((prefix, f"site {site}"))


IFNAMSIZ = 15  # Linux interface names: 16 bytes with the terminating NUL


def _check_switches(config: OvercastConfig) -> Iterator[ConfigError]:
    dpids: dict[int, str] = {}
    l2 = config.l2_segments()
    for name, site in config.sites.items():
        dpid = config.dpid(name)
        if dpid in dpids:
            yield ConfigError(
                f"sites.{name}.switch.dpid",
                f"datapath id {dpid} is already sites.{dpids[dpid]}'s; give every switch its own",
            )
        dpids.setdefault(dpid, name)
        owner: dict[tuple[str, str], str] = {}
        for port, access in site.switch.access.items():
            at = f"sites.{name}.switch.access.{port}"
            if len(port) > IFNAMSIZ or not port or "/" in port or port.strip() != port:
                yield ConfigError(at, f"{port!r} is not an interface name (1-15 characters)")
            seg = l2.get(access.segment)
            if seg is None:
                known = ", ".join(sorted(l2)) or "none"
                yield ConfigError(
                    f"{at}.segment",
                    f"no L2 segment {access.segment!r}; access ports join one of: {known}",
                )
            elif name not in seg.sites:
                yield ConfigError(
                    f"{at}.segment",
                    f"site {name!r} is not in segment {access.segment!r}; add it to "
                    f"segments.{access.segment}.sites or pick another segment",
                )
            for mac in access.hosts:
                if (access.segment, mac) in owner:
                    yield ConfigError(
                        f"{at}.hosts",
                        f"{mac} is already listed at port {owner[(access.segment, mac)]!r}; "
                        "a MAC sits at one port",
                    )
                owner.setdefault((access.segment, mac), port)
