"""A live BGP session feed: a receive-only BGP speaker (RFC 4271) that turns each UPDATE a
neighbour sends into Updates.

Why our own speaker rather than exabgp or os-ken's: a monitor only needs to open the session,
keep it up and read UPDATEs; decoding is wire.py, which the MRT and BMP feeds already use and
the golden tests pin down. exabgp would be a second process speaking a text API (more latency,
one more thing to supervise); os-ken's speaker needs eventlet's monkey-patching, which does not
mix with asyncio, and decodes every message a second time.

What it does: IPv4 and IPv6 unicast (RFC 4760), 4-byte ASNs (RFC 6793), capabilities
(RFC 5492), extended messages (RFC 8654), passive (listen) or active (connect, retrying), the
FSM of RFC 4271 section 8 in its basic form (OpenSent -> OpenConfirm -> Established, hold and
keepalive timers, NOTIFICATION on errors), RFC 7606 error handling (each outcome counted in
`overcast_bgp_feed_error_handling_total`), TCP-MD5 per neighbour (RFC 2385, `tcp_md5.py`),
graceful restart as a receiving speaker (RFC 4724, the N bit of RFC 8538, long-lived RFC
9494): a restarting neighbour's routes are held stale (`PeerRestarting`) and only those it
does not announce again before End-of-RIB are withdrawn (`EndOfRib`), so a planned router
restart moves no event. It announces nothing, and sends End-of-RIB at once.

How each error a neighbour can make is treated (RFC 4271 section 6, RFC 7606; counted in
`overcast_bgp_feed_error_handling_total{action}` and logged with the neighbour):

  Header (6.1)       marker not all ones                   1/1 Connection Not Synchronized
                     length < 19, > 4,096 (> 65,535 with   1/2 Bad Message Length, data =
                     RFC 8654), OPEN < 29 or > 4,096,      the length field
                     UPDATE < 23, NOTIFICATION < 21,
                     KEEPALIVE != 19
                     type not 1-4 (no ROUTE-REFRESH        1/3 Bad Message Type, data = type
                     advertised)
  OPEN (6.2)         version != 4                          2/1, data = 4
                     ASN not the configured one            2/2 Bad Peer AS
                     BGP identifier 0 (RFC 6286)           2/3 Bad BGP Identifier
                     parameter other than capabilities     2/4 Unsupported Optional Parameter
                     hold time 1 or 2                      2/6 Unacceptable Hold Time
                     unparseable                           2/0
  FSM (RFC 6608)     not OPEN in OpenSent, not KEEPALIVE   5/1, 5/2, 5/3
                     in OpenConfirm, OPEN when Established
  Hold timer         nothing for the hold time             4/0 Hold Timer Expired
  Collision (6.8)    a second session with a neighbour     6/7 to the newer one
  UPDATE (RFC 7606)  attribute flags conflict (3 c),       treat-as-withdraw: every route
                     ORIGIN/NEXT_HOP/MED/LOCAL_PREF/       the UPDATE names is withdrawn,
                     ORIGINATOR_ID length, COMMUNITIES/    the session stays
                     CLUSTER_LIST/EXTENDED/LARGE_
                     COMMUNITIES not a non-zero multiple,
                     bad ORIGIN value, malformed AS_PATH
                     (7.1-7.14), ORIGIN/AS_PATH/NEXT_HOP
                     missing (3 d), attribute list cut
                     short (4)
                     ATOMIC_AGGREGATE, AGGREGATOR (7.6,    attribute discard
                     7.7), AS4_PATH, AS4_AGGREGATOR (RFC
                     6793 section 6), a repeated attribute
                     (3 g)
                     MP_REACH/MP_UNREACH of a family not   skipped (family-ignored), the
                     negotiated (RFC 4760 section 6)       rest of the UPDATE is used
                     NLRI or withdrawn routes malformed    session reset: 3/10 Invalid
                     (5.3), MP attribute repeated (3 g) or Network Field, 3/1, 3/9; 3/2
                     unreadable (7.11), lengths past the   Unrecognized Well-known
                     message (4), unknown well-known type  Attribute
  NOTIFICATION       from the neighbour, in any state      session ends, decoded in the log

Not checked, on purpose: the first AS of the AS_PATH against the neighbour's (RFC 4271 6.3):
route servers do not prepend theirs (RFC 7947 section 2.2.2.1), and a monitor wants to see
such paths, not reset the session over them. When a session ends, its routes are withdrawn (the Adj-RIB-In is gone, RFC 4271
section 8.2.2): the feed emits a `PeerDown` and the guard withdraws them, so detectors see the
loss of visibility.

    speaker = BgpSpeaker(local_asn=65010, router_id="192.0.2.10", peers={"192.0.2.1": None})
    await speaker.listen("192.0.2.10")
    async for update in speaker.updates(): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bgp_guard.feeds.live import LiveFeed
from bgp_guard.feeds.stats import worth_logging
from bgp_guard.feeds.tcp_md5 import TcpMd5Error, TcpMd5Key, set_key
from bgp_guard.update import EndOfRib, PeerDown, PeerRestarting
from bgp_guard.wire import (
    ADD_PATH_RECEIVE,
    ADMINISTRATIVE_SHUTDOWN,
    AFI_IPV4,
    AFI_IPV6,
    BAD_BGP_IDENTIFIER,
    BAD_PEER_AS,
    CEASE,
    CONNECTION_COLLISION,
    FSM_ERROR,
    HARD_RESET,
    HEADER_ERROR,
    HEADER_LEN,
    HOLD_TIMER_EXPIRED,
    KEEPALIVE,
    MAX_EXTENDED_MESSAGE,
    MAX_MESSAGE,
    MESSAGE_NAMES,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
    OPEN_ERROR,
    SAFI_UNICAST,
    UNACCEPTABLE_HOLD_TIME,
    UNSUPPORTED_PARAMETER,
    UNSUPPORTED_VERSION,
    UPDATE_ERROR,
    GracefulRestart,
    Notification,
    Open,
    TreatAsWithdraw,
    WireError,
    check_header,
    decode_header,
    decode_update,
    end_of_rib,
    end_of_rib_afi,
)

log = logging.getLogger("bgp_guard.feeds.session")

FAMILIES = frozenset({(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)})
# Message types a session may carry: we advertise no ROUTE-REFRESH (RFC 2918), so a type 5
# is as unknown as any other (RFC 4271 section 6.1, Bad Message Type).
KNOWN_TYPES = frozenset(MESSAGE_NAMES)
# RFC 4271 section 8: a large hold time while waiting for OPEN (suggested 4 minutes).
OPEN_WAIT = 240.0
READ_SIZE = 1 << 16
CONNECT_RETRY = 5.0  # seconds between active connection attempts (section 10 suggests 120)
# A SYN the neighbour drops (a TCP-MD5 password mismatch does that silently) would otherwise
# wait for the kernel's ~2 minutes of SYN retries before the next attempt.
CONNECT_TIMEOUT = 30.0
# Our own restart time (RFC 4724 section 3): we announce nothing, so it only says we help.
RESTART_TIME = 120
# How long a restarted neighbour may take to send End-of-RIB before its routes that are
# still stale are withdrawn (FRR's and Cisco's stale-path time).
STALE_PATH_TIME = 360.0
# RFC 6608: which state an unexpected message arrived in.
UNEXPECTED_IN_OPENSENT, UNEXPECTED_IN_OPENCONFIRM, UNEXPECTED_IN_ESTABLISHED = 1, 2, 3


class SessionError(Exception):
    """The session must end; `notification` is sent to the neighbour first when given.
    `malformed`: the neighbour sent something RFC 4271 or RFC 7606 resets the session for
    (counted as `session-reset`), rather than, say, a NOTIFICATION or a silent hold time."""

    def __init__(
        self,
        reason: str,
        notification: Notification | None = None,
        malformed: bool = True,
        received: Notification | None = None,
    ) -> None:
        super().__init__(reason)
        self.notification = notification
        self.malformed = malformed and notification is not None
        self.received = received  # the neighbour's NOTIFICATION that ended the session


def neighbour(peer_ip: str) -> str:
    """How a peer-down event names the neighbour."""
    return f"BGP neighbour {peer_ip}"


@dataclass(frozen=True, slots=True)
class Established:
    """What was negotiated with one neighbour."""

    peer_ip: str
    peer_asn: int
    hold_time: int
    asn4: bool
    families: frozenset[tuple[int, int]]
    add_path: frozenset[int]  # AFIs whose NLRI carry path identifiers, RFC 7911
    max_length: int = MAX_MESSAGE  # 65,535 once both sides sent extended messages (RFC 8654)
    # Graceful restart as the neighbour offered it: the IP versions whose routes it asks us
    # to keep while it restarts, for how long (RFC 4724 restart time, then the RFC 9494
    # long-lived stale time), and whether a NOTIFICATION also starts one (RFC 8538).
    restart_versions: frozenset[int] = frozenset()
    restart_time: int = 0
    long_lived_time: int = 0
    notification_restart: bool = False

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(_VERSION[afi] for afi, _ in self.families)


_VERSION = {AFI_IPV4: 4, AFI_IPV6: 6}


@dataclass(slots=True)
class _Restart:
    """A neighbour in graceful restart: its routes are held stale until `timer` fires (then
    withdrawn) or it sends End-of-RIB for each of `awaiting` once back."""

    peer_asn: int
    timer: asyncio.TimerHandle
    awaiting: set[int]  # IP versions whose End-of-RIB is still due


class BgpSpeaker(LiveFeed):
    """Receive-only BGP speaker. `peers` maps each allowed neighbour address to its expected
    ASN (None: any ASN); `peers=None` accepts any neighbour (a lab convenience). `passwords`
    maps neighbour addresses to their TCP-MD5 keys; sessions with the others are unsigned."""

    def __init__(
        self,
        local_asn: int,
        router_id: str,
        peers: dict[str, int | None] | None = None,
        hold_time: int = 90,
        passwords: Mapping[str, TcpMd5Key] | None = None,
    ) -> None:
        if hold_time in (1, 2):
            raise ValueError("hold time must be 0 or at least 3 seconds (RFC 4271 section 4.2)")
        super().__init__("session")
        # Offer to receive ADD-PATH (RFC 7911) so a neighbour can show us all its paths, and
        # messages up to 65,535 bytes (RFC 8654): a long AS path or many communities fit.
        add_path = tuple((afi, safi, ADD_PATH_RECEIVE) for afi, safi in sorted(FAMILIES))
        # Graceful restart (RFC 4724) as a receiving speaker only: no families of our own to
        # keep, the N bit (RFC 8538), and long-lived graceful restart (RFC 9494) likewise.
        self.open = Open(
            local_asn,
            hold_time,
            router_id,
            FAMILIES,
            asn4=True,
            add_path=add_path,
            extended_message=True,
            graceful_restart=GracefulRestart(RESTART_TIME, notification=True),
            long_lived=(),
        )
        self.peers = peers
        self.passwords = dict(passwords or {})
        self.established: dict[str, Established] = {}
        self._restarting: dict[str, _Restart] = {}
        self._closing = False
        self.connect_timeout = CONNECT_TIMEOUT

    async def listen(self, host: str, port: int = 179) -> None:
        """Passive: accept sessions from the configured neighbours. Raises TcpMd5Error if a
        neighbour's password cannot be set on the listening socket."""
        await self._serve(host, port, self._set_listener_keys)

    def _set_listener_keys(self, sock: socket.socket) -> None:
        for peer, key in self.passwords.items():
            # Listeners are IPv6-only or IPv4: a neighbour of the other family never
            # reaches this one.
            if (":" in peer) == (sock.family == socket.AF_INET6):
                set_key(sock, peer, key)

    def connect(
        self,
        host: str,
        port: int = 179,
        local_address: str | None = None,
        retry: float = CONNECT_RETRY,
    ) -> None:
        """Active: keep a session to `host` up, reconnecting `retry` seconds after a failure.
        The first socket is made here, so a password the kernel refuses (TcpMd5Error) or a
        local address it cannot bind (OSError) is raised at once."""
        first = self._active_socket(host, local_address)
        self._publish_counters()
        self._spawn(self._keep_connected(first, host, port, local_address, retry))

    def _active_socket(self, host: str, local_address: str | None) -> socket.socket:
        """An unconnected socket to `host`, bound to `local_address`, signing with `host`'s
        password if it has one: the key must be set before the SYN goes out."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if host in self.passwords:
                set_key(sock, host, self.passwords[host])
            if local_address:
                sock.bind((local_address, 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _keep_connected(
        self,
        sock: socket.socket | None,
        host: str,
        port: int,
        local_address: str | None,
        retry: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        down_since = 0.0
        while True:
            try:
                sock = sock or self._active_socket(host, local_address)
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), self.connect_timeout)
                reader, writer = await asyncio.open_connection(sock=sock)
            except (OSError, TimeoutError, TcpMd5Error) as exc:
                if sock is not None:
                    sock.close()
                failures += 1
                now = time.monotonic()
                down_since = down_since or now
                why = connect_failure(exc, host in self.passwords, self.connect_timeout)
                if now - down_since >= (self.open.hold_time or OPEN_WAIT):
                    # Down for a hold time: a peer-down event until it is Established.
                    self._peer_failed(neighbour(host), f"{neighbour(host)} unreachable: {why}")
                if worth_logging(failures):
                    log.warning(
                        "BGP neighbour %s port %d unreachable: %s; retrying every %g s "
                        "(%d attempts failed)",
                        host,
                        port,
                        why,
                        retry,
                        failures,
                    )
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            else:
                failures, down_since = 0, 0.0
                await self._connection(reader, writer)
            sock = None
            await asyncio.sleep(retry)  # ConnectRetryTimer, RFC 4271 section 8.2.2

    async def close(self) -> None:
        """Say goodbye to every Established neighbour (Cease, Administrative Shutdown, RFC
        4486 section 4) before the connections close."""
        self._closing = True
        for restart in self._restarting.values():
            restart.timer.cancel()
        for writer in list(self._writers):
            if writer.get_extra_info("peername")[0] in self.established:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write(Notification(CEASE, ADMINISTRATIVE_SHUTDOWN).encode())
        await super().close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_ip = writer.get_extra_info("peername")[0]
        session: Established | None = None
        if self.peers is not None and peer_ip not in self.peers:
            self.stats.refused("not-a-neighbour", peer_ip, "add it to guard.feeds.bgp.neighbours")
            writer.close()
            return
        exchanged: Notification | None = None  # sent or received as the session ended
        try:
            writer.write(self.open.encode())  # OpenSent
            session = await self._open_confirm(peer_ip, reader, writer)
            await self._established(session, reader, writer)
        except SessionError as exc:
            exchanged = exc.notification or exc.received
            self._ended(peer_ip, session, str(exc), exc.notification, exc.malformed)
            if exc.notification is not None:
                with contextlib.suppress(OSError):
                    writer.write(exc.notification.encode())
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            if self._closing:
                why = "closed by us: the guard is stopping" + (
                    f"; sent {Notification(CEASE, ADMINISTRATIVE_SHUTDOWN)}" if session else ""
                )
            elif isinstance(exc, asyncio.IncompleteReadError | BrokenPipeError):
                why = "the neighbour closed the TCP connection without a NOTIFICATION"
            elif isinstance(exc, ConnectionResetError):
                why = "the neighbour reset the TCP connection, without a NOTIFICATION"
            else:
                why = f"TCP connection lost: {exc.strerror or exc}"
            self._ended(peer_ip, session, why, None, False)
        finally:
            writer.close()
            if session is not None:
                if self.established.get(peer_ip) is session:
                    del self.established[peer_ip]
                if not self._closing and _restarts(session, exchanged):
                    self._restart_begins(session)
                else:
                    source = f"session:{peer_ip}"
                    down = PeerDown(time.time(), peer_ip, session.peer_asn, source)
                    self._emit_peer_down(down, neighbour(peer_ip))
            self.stats.flush()

    def _restart_begins(self, session: Established) -> None:
        """The session is gone but the neighbour asked for graceful restart: keep its routes
        (stale) for the restart time plus the long-lived stale time. Those of a family it
        did not ask to keep go now (RFC 4724 section 4.2)."""
        peer_ip, now = session.peer_ip, time.time()
        source = f"session:{peer_ip}"
        previous = self._restarting.pop(peer_ip, None)
        if previous is not None:
            previous.timer.cancel()
        self._emit_event(PeerRestarting(now, peer_ip, session.peer_asn, source))
        for version in sorted(session.versions - session.restart_versions):
            self._emit_event(EndOfRib(now, peer_ip, session.peer_asn, source, version))
        hold = session.restart_time + session.long_lived_time
        timer = asyncio.get_running_loop().call_later(hold, self._restart_expired, peer_ip)
        self._restarting[peer_ip] = _Restart(session.peer_asn, timer, set())
        self._peer_failed(
            neighbour(peer_ip),
            f"{neighbour(peer_ip)} (AS{session.peer_asn}) is restarting (graceful restart): "
            f"its routes are kept, marked stale, for up to {hold} s; nothing is withdrawn "
            "unless it does not come back.",
        )
        log.warning(
            "BGP neighbour %s AS%d is restarting (graceful restart, RFC 4724%s): its routes "
            "are kept, marked stale, for up to %d s until it is back and sends End-of-RIB",
            peer_ip,
            session.peer_asn,
            ", long-lived RFC 9494" if session.long_lived_time else "",
            hold,
        )

    def _restart_expired(self, peer_ip: str) -> None:
        restart = self._restarting.pop(peer_ip)
        back = peer_ip in self.established
        log.warning(
            "BGP neighbour %s AS%d %s: its routes still stale are withdrawn",
            peer_ip,
            restart.peer_asn,
            "sent no End-of-RIB in time" if back else "did not come back in time",
        )
        source = f"session:{peer_ip}"
        if back:  # only what it did not announce again
            self._emit_event(EndOfRib(time.time(), peer_ip, restart.peer_asn, source))
            return
        self._peer_failed(
            neighbour(peer_ip),
            f"{neighbour(peer_ip)} (AS{restart.peer_asn}) did not come back from its graceful "
            "restart in time; its routes are withdrawn.",
        )
        down = PeerDown(time.time(), peer_ip, restart.peer_asn, source)
        self._emit_peer_down(down, neighbour(peer_ip))

    def _restart_resumes(self, session: Established, graceful: bool) -> None:
        """A restarting neighbour is Established again: wait for its End-of-RIB (RFC 4724
        section 4.2), or drop its stale routes at once if it no longer offers graceful
        restart."""
        restart = self._restarting.get(session.peer_ip)
        if restart is None:
            return
        restart.timer.cancel()
        if not graceful:
            del self._restarting[session.peer_ip]
            source = f"session:{session.peer_ip}"
            self._emit_event(EndOfRib(time.time(), session.peer_ip, session.peer_asn, source))
            return
        restart.awaiting = set(session.versions)
        restart.timer = asyncio.get_running_loop().call_later(
            STALE_PATH_TIME, self._restart_expired, session.peer_ip
        )

    def _end_of_rib(self, session: Established, afi: int) -> None:
        restart = self._restarting.get(session.peer_ip)
        version = _VERSION.get(afi)
        if restart is None or version is None:
            return
        source = f"session:{session.peer_ip}"
        self._emit_event(EndOfRib(time.time(), session.peer_ip, session.peer_asn, source, version))
        restart.awaiting.discard(version)
        if not restart.awaiting:
            restart.timer.cancel()
            del self._restarting[session.peer_ip]
            log.info(
                "BGP neighbour %s AS%d finished its graceful restart (End-of-RIB); routes it "
                "did not announce again are withdrawn",
                session.peer_ip,
                session.peer_asn,
            )

    def _ended(
        self,
        peer_ip: str,
        session: Established | None,
        why: str,
        sent: Notification | None,
        malformed: bool,
    ) -> None:
        """One log line for every end of a session, saying who ended it and why."""
        who = f"{peer_ip} AS{session.peer_asn}" if session else peer_ip
        state = "session" if session else "session attempt"
        if sent is not None:
            why = f"closed by us: {why}; sent {sent}"
        if malformed:
            self.stats.handled("session-reset", who, why, log=False)  # logged below
        level = logging.INFO if self._closing else logging.WARNING
        log.log(level, "BGP %s with %s ended: %s", state, who, why)

    async def _open_confirm(
        self, peer_ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Established:
        mtype, body = await self._read(reader, OPEN_WAIT, UNEXPECTED_IN_OPENSENT)
        if mtype != MSG_OPEN:
            raise SessionError(
                f"expected OPEN, got {MESSAGE_NAMES[mtype]}",
                Notification(FSM_ERROR, UNEXPECTED_IN_OPENSENT),
            )
        peer_open = self._check_open(peer_ip, body)
        hold = min(self.open.hold_time, peer_open.hold_time)
        writer.write(KEEPALIVE)  # OpenConfirm: wait for the neighbour's KEEPALIVE
        mtype, body = await self._read(reader, hold or OPEN_WAIT, UNEXPECTED_IN_OPENCONFIRM)
        if mtype != MSG_KEEPALIVE:
            raise SessionError(
                f"expected KEEPALIVE, got {MESSAGE_NAMES[mtype]}",
                Notification(FSM_ERROR, UNEXPECTED_IN_OPENCONFIRM),
            )
        families = (peer_open.families or {(AFI_IPV4, SAFI_UNICAST)}) & FAMILIES
        extended = peer_open.extended_message and self.open.extended_message
        gr, llgr = peer_open.graceful_restart, peer_open.long_lived or ()
        kept = {(a, s) for a, s, _ in gr.families} if gr else set()
        long_lived = {(a, s): stale for a, s, _, stale in llgr if stale} if gr else {}
        session = Established(
            peer_ip,
            peer_open.asn,
            hold,
            peer_open.asn4,
            frozenset(families),
            peer_open.sends_path_ids_to(self.open),
            MAX_EXTENDED_MESSAGE if extended else MAX_MESSAGE,
            restart_versions=frozenset(
                _VERSION[a] for a, s in (kept | long_lived.keys()) & families
            ),
            restart_time=gr.restart_time if gr else 0,
            long_lived_time=max((long_lived[f] for f in families if f in long_lived), default=0),
            notification_restart=bool(gr and gr.notification),
        )
        if peer_ip in self.established:
            # RFC 4271 section 6.8: one session per neighbour. Passive and active both
            # configured (or a neighbour doing the same) can open a second one; keep the first,
            # so its routes are never withdrawn by the duplicate closing.
            raise SessionError(
                "a session with this neighbour is already Established",
                Notification(CEASE, CONNECTION_COLLISION),
                malformed=False,
            )
        self.established[peer_ip] = session
        self._peer_up(neighbour(peer_ip))
        self._restart_resumes(session, gr is not None)
        log.info("BGP session with %s AS%d established: %s", peer_ip, session.peer_asn, session)
        return session

    def _check_open(self, peer_ip: str, body: bytes) -> Open:
        """The neighbour's OPEN, checked as RFC 4271 section 6.2 says."""
        try:
            peer_open = Open.decode(body)
        except WireError as exc:
            raise SessionError(f"malformed OPEN: {exc}", Notification(OPEN_ERROR)) from None
        if peer_open.version != 4:
            raise SessionError(
                f"BGP version {peer_open.version}",
                Notification(OPEN_ERROR, UNSUPPORTED_VERSION, b"\x00\x04"),
            )
        expected = self.peers.get(peer_ip) if self.peers is not None else None
        if expected is not None and peer_open.asn != expected:
            raise SessionError(
                f"neighbour says AS{peer_open.asn}, configured AS{expected}",
                Notification(OPEN_ERROR, BAD_PEER_AS),
            )
        if peer_open.hold_time in (1, 2):
            raise SessionError(
                f"hold time {peer_open.hold_time}",
                Notification(OPEN_ERROR, UNACCEPTABLE_HOLD_TIME),
            )
        # RFC 6286 section 2.2: any non-zero identifier (even ours, between two ASes).
        if peer_open.router_id == "0.0.0.0":
            raise SessionError(
                "BGP identifier 0.0.0.0", Notification(OPEN_ERROR, BAD_BGP_IDENTIFIER)
            )
        if peer_open.unsupported_parameters:
            raise SessionError(
                f"optional parameter types {list(peer_open.unsupported_parameters)}",
                Notification(OPEN_ERROR, UNSUPPORTED_PARAMETER),
            )
        return peer_open

    async def _established(
        self,
        session: Established,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Read whatever has arrived and decode every whole message in it: one await per
        TCP read rather than two per message keeps up with a full-table burst."""
        # We have nothing to announce: say so at once, so that a restarting neighbour need
        # not wait for us (RFC 4724 section 2).
        writer.write(b"".join(end_of_rib(afi, safi) for afi, safi in sorted(session.families)))
        keepalive = asyncio.ensure_future(self._send_keepalives(session.hold_time, writer))
        buf = b""
        max_length = session.max_length
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(
                        reader.read(READ_SIZE), session.hold_time or None
                    )
                except TimeoutError:
                    raise SessionError(
                        f"hold timer expired (no message for {session.hold_time} s)",
                        Notification(HOLD_TIMER_EXPIRED),
                        malformed=False,
                    ) from None
                if not chunk:
                    raise asyncio.IncompleteReadError(buf, None)
                buf += chunk
                off = 0
                while len(buf) - off >= HEADER_LEN:
                    try:
                        mtype, length = decode_header(buf, off, max_length)
                        if mtype != MSG_UPDATE or length < 23:
                            check_header(mtype, length, KNOWN_TYPES)
                    except WireError as exc:
                        raise _header_error(exc) from None
                    if off + length > len(buf):
                        break
                    self._message(session, mtype, buf, off + HEADER_LEN, off + length)
                    off += length
                buf = buf[off:]
                self.stats.flush()
        finally:
            keepalive.cancel()

    def _message(
        self,
        session: Established,
        mtype: int,
        buf: bytes,
        start: int,
        end: int,
    ) -> None:
        stats = self.stats
        stats.records += 1
        if mtype == MSG_UPDATE:
            self._update(session, buf, start, end)
        elif mtype == MSG_NOTIFICATION:
            received = Notification.decode(buf[start:end])
            raise SessionError(
                f"closed by the neighbour: {received}", malformed=False, received=received
            )
        elif mtype != MSG_KEEPALIVE:
            raise SessionError(
                f"unexpected {MESSAGE_NAMES[mtype]} when Established",
                Notification(FSM_ERROR, UNEXPECTED_IN_ESTABLISHED),
            )

    def _update(self, session: Established, buf: bytes, start: int, end: int) -> None:
        """One UPDATE, with RFC 7606 error handling: treat-as-withdraw and attribute discard
        keep the session; what hides the routes (NLRI, MP_REACH_NLRI) resets it."""
        source = f"session:{session.peer_ip}"
        try:
            msg = decode_update(
                buf, start, end, asn4=session.asn4, add_path=session.add_path, mandatory=True
            )
        except TreatAsWithdraw as exc:
            assert exc.message is not None
            withdrawn = exc.message.withdrawals(
                time.time(), session.peer_ip, session.peer_asn, source
            )
            self.stats.handled(
                "treat-as-withdraw",
                f"{session.peer_ip} AS{session.peer_asn}",
                f"malformed UPDATE ({exc}), {len(withdrawn)} routes withdrawn",
            )
            for update in withdrawn:
                self._emit(update)
            return
        except WireError as exc:
            raise SessionError(
                f"malformed UPDATE: {exc}", Notification(UPDATE_ERROR, exc.subcode, exc.data)
            ) from None
        attrs = msg.attrs
        if not msg.announced and not attrs.mp_reach and self._restarting:
            afi = end_of_rib_afi(msg, buf, start, end)
            if afi is not None:
                self._end_of_rib(session, afi)
        if attrs.discarded or attrs.other_families:
            self._partly_used(session, msg.attrs.discarded, attrs.other_families)
        for update in msg.updates(time.time(), session.peer_ip, session.peer_asn, source):
            self._emit(update)

    def _partly_used(
        self,
        session: Established,
        discarded: tuple[tuple[int, str], ...],
        other_families: tuple[tuple[int, int], ...],
    ) -> None:
        who = f"{session.peer_ip} AS{session.peer_asn}"
        for _, why in discarded:
            self.stats.handled("attribute-discard", who, f"{why}: attribute dropped (RFC 7606)")
        for afi, safi in other_families:
            # RFC 4760 section 6: only negotiated families are exchanged; routes of another
            # cannot be read, so they are skipped and the rest of the UPDATE is used.
            self.stats.handled(
                "family-ignored", who, f"routes of AFI {afi} SAFI {safi}, never negotiated"
            )

    @staticmethod
    async def _send_keepalives(hold_time: int, writer: asyncio.StreamWriter) -> None:
        if not hold_time:
            return  # hold time 0: no keepalives (RFC 4271 section 4.4)
        while True:
            writer.write(KEEPALIVE)
            await writer.drain()
            await asyncio.sleep(hold_time / 3)

    async def _read(
        self, reader: asyncio.StreamReader, timeout: float | None, state: int
    ) -> tuple[int, bytes]:
        """One message before Established (OPEN, KEEPALIVE): at most 4,096 bytes, since
        extended messages are not negotiated yet. A NOTIFICATION ends the session."""
        try:
            header = await asyncio.wait_for(reader.readexactly(HEADER_LEN), timeout)
        except TimeoutError:
            raise SessionError(
                f"hold timer expired (no message for {timeout:.0f} s)",
                Notification(HOLD_TIMER_EXPIRED),
                malformed=False,
            ) from None
        try:
            mtype, length = decode_header(header, 0, MAX_MESSAGE)
            check_header(mtype, length, KNOWN_TYPES)
        except WireError as exc:
            raise _header_error(exc) from None
        body = await reader.readexactly(length - HEADER_LEN)
        if mtype == MSG_NOTIFICATION:
            raise SessionError(
                f"closed by the neighbour: {Notification.decode(body)}", malformed=False
            )
        if mtype == MSG_UPDATE:
            raise SessionError(
                "UPDATE before the session is Established", Notification(FSM_ERROR, state)
            )
        return mtype, body


def connect_failure(exc: BaseException, signed: bool, timeout: float = CONNECT_TIMEOUT) -> str:
    """Why a connection to a neighbour failed, in words that point at the fix."""
    if isinstance(exc, TimeoutError):
        why = f"no answer within {timeout:g} s"
        if signed:  # a password mismatch makes the neighbour drop our SYNs, silently
            return f"{why}; check the TCP-MD5 password on both routers"
        return f"{why}; check the address, the route to it and any firewall"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: BGP is not listening there, or not for our address"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _restarts(session: Established, exchanged: Notification | None) -> bool:
    """Whether the end of `session` is a graceful restart: the neighbour offered to keep
    routes, and the session ended without a NOTIFICATION (RFC 4724), or with one other than
    Hard Reset when both sides set the N bit (RFC 8538 section 4)."""
    if not session.restart_versions:
        return False
    if exchanged is None:
        return True
    hard_reset = exchanged.code == CEASE and exchanged.subcode == HARD_RESET
    return session.notification_restart and not hard_reset


def _header_error(exc: WireError) -> SessionError:
    """RFC 4271 section 6.1: a Message Header Error NOTIFICATION, data as the error gives."""
    return SessionError(
        f"bad message header: {exc.reason}", Notification(HEADER_ERROR, exc.subcode, exc.data)
    )
