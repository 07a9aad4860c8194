"""The `guard:` section of overcast.yaml: which prefixes we watch and what is expected of them.

```yaml
guard:
  own_asns: {64500: {upstreams: [64501, 64502]}}
  prefixes:
    192.0.2.0/24: {origins: [64500], upstreams: [64501, 64502], max_length: 24,
                   flag_communities: [BLACKHOLE]}   # RFC 7999 on our prefix: an event
    198.51.100.0/24: {announced: false}          # held, never announced: squatting if seen
  min_peers: 2
  vrp_file: vrps.json                            # rpki-client or Routinator JSON
  asrel_file: 20260101.as-rel.txt                # CAIDA serial-1
  aspa: {file: rpki.json, scope: monitored}      # ASPA path verification (rpki-client -j)
  feeds:                                         # for `overcast guard watch`
    bgp: {local_asn: 64511, router_id: 192.0.2.10, listen: 192.0.2.10,
          neighbours: {192.0.2.1: 64500,          # or, with a TCP-MD5 (RFC 2385) password:
                       192.0.2.2: {asn: 64501, password_file: bgp-192.0.2.2.password}}}
    bmp: {listen: 127.0.0.1}                     # max_routers: 64, initiation_timeout: 30
    ris_live: {}                                 # RIPE RIS-live, our prefixes subscribed
```
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from bgp_guard import communities
from bgp_guard.feeds import RIS_LIVE_URL
from bgp_guard.sinks.config import Notify, SinkConfig
from overcast.model import Address, ConfigError, Model, Prefix

ASN_MAX = 2**32 - 1  # 4-byte AS numbers, RFC 6793


def _asn(value: Any) -> int:
    text = str(value).strip()
    digits = text[2:] if text[:2].upper() == "AS" else text
    if not digits.isdigit() or int(digits) > ASN_MAX:
        raise ValueError(f"{value!r} is not an AS number; write it like 64500 or AS64500")
    return int(digits)


ASN = Annotated[int, BeforeValidator(_asn)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression ({exc}); fix it") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class PathRule(Model):
    """An AS-path rule, tested on the path written as comma-separated ASNs, origin last
    ("64501,64500"), as BGPalerter does. Fires when `match` matches (if given) and `miss`
    does not (if given); also when the path is shorter or longer than the bounds."""

    match: Regex | None = None
    miss: Regex | None = None
    description: str = ""
    min_path_length: int | None = Field(None, ge=1)
    max_path_length: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something_to_check(self) -> PathRule:
        if (self.match, self.miss, self.min_path_length, self.max_path_length) == (None,) * 4:
            raise ValueError(
                "a path rule needs 'match', 'miss', 'min_path_length' or 'max_path_length'"
            )
        return self


def _community(value: str) -> str:
    communities.parse(value)  # ValueError names the fix
    return value


CommunityText = Annotated[str, AfterValidator(_community)]


class MonitoredPrefix(Model):
    # "any": watch the prefix for more-specifics and squatting without naming its origins;
    # whoever originates the exact prefix is legitimate, and so is a more-specific from an
    # AS that originates the exact prefix at the time.
    origins: tuple[ASN, ...] | Literal["any"] = ()
    upstreams: tuple[ASN, ...] = ()  # neighbours allowed next to the origin; empty: any
    # False: we hold the prefix but never announce it; any announcement is squatting (Q|0).
    announced: bool = True
    max_length: int | None = Field(None, ge=0, le=128)  # longest legitimate more-specific
    ignore_more_specifics: bool = False
    ignore: bool = False  # carve this sub-prefix out of a monitored one (BGPalerter `ignore`)
    path_rules: tuple[PathRule, ...] = ()
    # No-export style scope: the origin's direct neighbours may carry it, nobody beyond
    # them (the route must not reach a third AS).
    neighbours_only: bool = False
    # A route to the prefix (or a more-specific) carrying one of these is an event:
    # "BLACKHOLE", "NO_EXPORT", "64500:666", large "64500:1:2".
    flag_communities: tuple[CommunityText, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _origins_when_announced(self) -> MonitoredPrefix:
        if self.announced and not self.ignore and not self.origins:
            raise ValueError(
                "list the ASNs that originate this prefix (origins: [64500]), write "
                "'origins: any' to watch only for more-specifics, or set 'announced: false' "
                "if it must never be announced"
            )
        if not self.announced and self.origins:
            raise ValueError("an unannounced prefix has no origins; remove 'origins'")
        return self


class OwnAs(Model):
    """Neighbours expected around one of our ASNs; a list left out is not checked."""

    upstreams: tuple[ASN, ...] | None = None  # left of our ASN in a path (they hear us)
    downstreams: tuple[ASN, ...] | None = None  # right of our ASN (we hear them)


# What a neighbour is to the AS that received the route: it picks the ASPA procedure
# (draft-ietf-sidrops-aspa-verification-28 sections 5.5, 5.6). A collector's peers send it
# their full table, as to a customer: routes seen at a collector are verified downstream.
Relationship = Literal["customer", "peer", "provider", "route-server", "rs-client", "collector"]


class Neighbour(Model):
    """A BGP neighbour: its expected ASN (null: any) and, optionally, the file holding the
    TCP-MD5 password (RFC 2385) both routers sign the session's TCP segments with. The
    password itself is never written in overcast.yaml, so the config can be shared."""

    asn: ASN | None = None
    relationship: Relationship | None = None  # for ASPA; default guard.aspa.relationship
    # Relative to overcast.yaml; mode 0600, checked when `guard watch` starts.
    password_file: str | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """`192.0.2.1: 64500` is short for `192.0.2.1: {asn: 64500}`."""
        if not isinstance(value, dict):
            return {"asn": value}
        if "password" in value:  # never echo it
            raise ValueError(
                "a TCP-MD5 password is not written in overcast.yaml; put it in a file only "
                "you can read (chmod 600) and name that file with 'password_file'"
            )
        return value


class BgpFeed(Model):
    """A receive-only BGP session (RFC 4271) with routers that send us what they see."""

    local_asn: ASN
    router_id: Address
    neighbours: dict[Address, Neighbour] = Field(min_length=1)
    listen: Address | None = None  # passive: accept the neighbours' sessions here
    connect: tuple[Address, ...] = ()  # active: dial these neighbours
    port: int = Field(179, ge=1, le=65535)
    local_address: Address | None = None  # source address for active sessions
    hold_time: int = Field(90, ge=0, le=65535)

    @model_validator(mode="after")
    def _consistent(self) -> BgpFeed:
        if self.router_id.version != 4:
            raise ValueError("router_id is an IPv4 address (RFC 4271 section 4.2), e.g. 192.0.2.1")
        if self.hold_time in (1, 2):
            raise ValueError("hold_time must be 0 or at least 3 seconds (RFC 4271 section 4.2)")
        if self.listen is None and not self.connect:
            raise ValueError("set 'listen' (passive) or 'connect' (active), or both")
        stray = [str(a) for a in self.connect if a not in self.neighbours]
        if stray:
            raise ValueError(f"connect lists {', '.join(stray)}; add them to 'neighbours' first")
        return self


class BmpFeed(Model):
    """A BMP (RFC 7854) station: routers connect here and mirror their BGP peers' routes.
    The limits keep one misbehaving client from taking the station's memory: past them a
    connection is closed and counted in overcast_bgp_feed_refused_total."""

    listen: Address
    port: int = Field(11019, ge=1, le=65535)  # no IANA port; 11019 is the common choice
    max_routers: int = Field(64, ge=1)  # connections in all
    # per source address: a reconnecting router's new connection overlaps its old one
    max_connections_per_router: int = Field(2, ge=1)
    initiation_timeout: float = Field(30.0, gt=0)  # until the first message (RFC 7854 4.3)
    message_timeout: float = Field(30.0, gt=0)  # for a message to arrive whole
    # BMP has no keepalive and a quiet router may send nothing for hours: off by default
    # (TCP keepalives still find a router that died).
    idle_timeout: float | None = Field(None, gt=0)


def _websocket_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed [ in an IPv6 address
        host = None
    if host is None or parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{value!r} is not a websocket URL; write it like {RIS_LIVE_URL}")
    return value


class RisLiveWebsocket(Model):
    """A RIPE RIS-live websocket (https://ris-live.ripe.net/manual/): the monitored prefixes
    and our ASNs are subscribed, and the connection is kept up with pings and reconnects."""

    url: Annotated[str, AfterValidator(_websocket_url)] = RIS_LIVE_URL
    # Websocket pings (RFC 6455 section 5.5.2): a dead connection is noticed within
    # ping_interval + ping_timeout seconds even when no BGP message is due.
    ping_interval: float = Field(20.0, gt=0)
    ping_timeout: float = Field(20.0, gt=0)
    # Reconnect delays double from reconnect_min up to reconnect_max, with jitter.
    reconnect_min: float = Field(1.0, gt=0)
    reconnect_max: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _delays_in_order(self) -> RisLiveWebsocket:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min is above reconnect_max; swap or lower them")
        return self


class AspaSettings(Model):
    """ASPA path verification (bgp_guard.aspa)."""

    file: str | None = None  # rpki-client -j, Routinator --enable-aspa json/jsonext, or CSV
    # monitored: paths to our prefixes; ours: also any path through our ASNs; all: every path
    scope: Literal["monitored", "ours", "all"] = "monitored"
    relationship: Relationship = "collector"  # feeds and neighbours that do not say
    neighbours: dict[Address, Relationship] = {}  # peers seen over BMP or in MRT files


class Feeds(Model):
    bgp: BgpFeed | None = None
    bmp: BmpFeed | None = None
    ris_live: RisLiveWebsocket | None = None
    # A feed that delivers no update for this many seconds is a feed-silent event until
    # it does (null: never). Pick it above the quietest normal gap of what you watch.
    silent_after: float | None = Field(None, gt=0)


class GuardConfig(Model):
    prefixes: dict[Prefix, MonitoredPrefix] = {}
    own_asns: dict[ASN, OwnAs] = {}
    min_peers: int = Field(1, ge=1)  # distinct peers that must see an alert before it fires
    # Visibility loss fires when this many peers that carried a monitored prefix withdrew it,
    # and they are at least this share of those peers (0.5: half of them).
    visibility_min_withdrawn: int = Field(3, ge=1)
    visibility_min_share: float = Field(0.0, ge=0, le=1)
    resolve_after: float = Field(300.0, ge=0)  # seconds withdrawn before an event is resolved
    vrp_file: str | None = None  # RPKI VRPs, rpki-client or Routinator JSON (or CSV)
    rpki_not_found: bool = False  # also alert when no ROA covers our announcement
    asrel_file: str | None = None  # CAIDA AS relationships, serial-1 `a|b|rel`
    leak_scope: Literal["monitored", "all"] = "monitored"
    aspa: AspaSettings = AspaSettings()
    bgpalerter_file: str | None = None  # a BGPalerter prefixes.yml, merged into `prefixes`
    feeds: Feeds = Feeds()  # live feeds for `overcast guard watch`
    # Notices for the NOC from `guard watch` (bgp_guard/sinks/config.py), and the SQLite file
    # (relative to overcast.yaml) that keeps events and the sinks' queues across restarts.
    sinks: dict[str, SinkConfig] = {}
    notify: Notify = Notify()
    state_file: str = "guard-state.sqlite"

    def problems(self) -> list[ConfigError]:
        """Checks that need the whole section; paths are relative to the file root."""
        errors = []
        for prefix, mon in self.prefixes.items():
            bits = prefix.max_prefixlen
            if mon.max_length is not None and not prefix.prefixlen <= mon.max_length <= bits:
                errors.append(
                    ConfigError(
                        f"guard.prefixes.{prefix}.max_length",
                        f"{mon.max_length} is outside {prefix}; use "
                        f"{prefix.prefixlen}..{bits} or remove it",
                    )
                )
            if mon.ignore and not any(
                other != prefix and prefix.subnet_of(other)  # type: ignore[arg-type]
                for other in self.prefixes
                if other.version == prefix.version
            ):
                errors.append(
                    ConfigError(
                        f"guard.prefixes.{prefix}.ignore",
                        "'ignore' carves a sub-prefix out of a monitored prefix, but no "
                        "monitored prefix covers this one; remove the entry",
                    )
                )
        bgp = self.feeds.bgp
        for address, neighbour in bgp.neighbours.items() if bgp else ():
            if neighbour.relationship and address in self.aspa.neighbours:
                errors.append(
                    ConfigError(
                        f"guard.aspa.neighbours.{address}",
                        "this neighbour's relationship is already set under "
                        "guard.feeds.bgp.neighbours; keep one of the two",
                    )
                )
        return errors
