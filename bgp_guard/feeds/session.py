"""A live BGP session feed: a receive-only BGP speaker (RFC 4271) that turns each UPDATE a
neighbour sends into Updates.

Why our own speaker rather than exabgp or os-ken's: a monitor only needs to open the session,
keep it up and read UPDATEs; decoding is wire.py, which the MRT and BMP feeds already use and
the golden tests pin down. exabgp would be a second process speaking a text API (more latency,
one more thing to supervise); os-ken's speaker needs eventlet's monkey-patching, which does not
mix with asyncio, and decodes every message a second time.

What it does: IPv4 and IPv6 unicast (RFC 4760), 4-byte ASNs (RFC 6793), capabilities
(RFC 5492), passive (listen) or active (connect, retrying), the FSM of RFC 4271 section 8 in
its basic form (OpenSent -> OpenConfirm -> Established, hold and keepalive timers,
NOTIFICATION on errors), TCP-MD5 per neighbour (RFC 2385, `tcp_md5.py`). It announces
nothing. When a session ends, its routes are withdrawn (the Adj-RIB-In is gone, RFC 4271
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
from bgp_guard.feeds.tcp_md5 import TcpMd5Error, TcpMd5Key, set_key
from bgp_guard.update import PeerDown
from bgp_guard.wire import (
    ADD_PATH_RECEIVE,
    AFI_IPV4,
    AFI_IPV6,
    HEADER_LEN,
    KEEPALIVE,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
    SAFI_UNICAST,
    Notification,
    Open,
    WireError,
    decode_header,
    decode_update,
)

log = logging.getLogger("bgp_guard.feeds.session")

FAMILIES = frozenset({(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)})
# RFC 4271 section 8: a large hold time while waiting for OPEN (suggested 4 minutes).
OPEN_WAIT = 240.0
READ_SIZE = 1 << 16
CONNECT_RETRY = 5.0  # seconds between active connection attempts (section 10 suggests 120)
# A SYN the neighbour drops (a TCP-MD5 password mismatch does that silently) would otherwise
# wait for the kernel's ~2 minutes of SYN retries before the next attempt.
CONNECT_TIMEOUT = 30.0

# NOTIFICATION codes, RFC 4271 section 4.5 and 6.
HEADER_ERROR, OPEN_ERROR, HOLD_TIMER_EXPIRED, FSM_ERROR, CEASE = 1, 2, 4, 5, 6
BAD_PEER_AS, UNACCEPTABLE_HOLD_TIME = 2, 6
CONNECTION_COLLISION = 7  # Cease subcode, RFC 4486 section 4


class SessionError(Exception):
    """The session must end; `notification` is sent to the neighbour first when given."""

    def __init__(self, reason: str, notification: Notification | None = None) -> None:
        super().__init__(reason)
        self.notification = notification


@dataclass(frozen=True, slots=True)
class Established:
    """What was negotiated with one neighbour."""

    peer_ip: str
    peer_asn: int
    hold_time: int
    asn4: bool
    families: frozenset[tuple[int, int]]
    add_path: frozenset[int]  # AFIs whose NLRI carry path identifiers, RFC 7911


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
        # Offer to receive ADD-PATH (RFC 7911) so a neighbour can show us all its paths.
        add_path = tuple((afi, safi, ADD_PATH_RECEIVE) for afi, safi in sorted(FAMILIES))
        self.open = Open(local_asn, hold_time, router_id, FAMILIES, asn4=True, add_path=add_path)
        self.peers = peers
        self.passwords = dict(passwords or {})
        self.established: dict[str, Established] = {}

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
        while True:
            try:
                sock = sock or self._active_socket(host, local_address)
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
                reader, writer = await asyncio.open_connection(sock=sock)
            except (OSError, TimeoutError, TcpMd5Error) as exc:
                if sock is not None:
                    sock.close()
                # A password mismatch makes the neighbour drop our SYNs: a timeout.
                silent = isinstance(exc, TimeoutError) and host in self.passwords
                hint = "; check the TCP-MD5 password on both routers" if silent else ""
                log.info(
                    "BGP connect to %s port %d failed: %s%s; retrying",
                    host,
                    port,
                    exc or "timed out",
                    hint,
                )
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            else:
                await self._connection(reader, writer)
            sock = None
            await asyncio.sleep(retry)  # ConnectRetryTimer, RFC 4271 section 8.2.2

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_ip = writer.get_extra_info("peername")[0]
        session: Established | None = None
        try:
            if self.peers is not None and peer_ip not in self.peers:
                raise SessionError(f"{peer_ip} is not a configured neighbour")
            writer.write(self.open.encode())  # OpenSent
            session = await self._open_confirm(peer_ip, reader, writer)
            await self._established(session, reader, writer)
        except SessionError as exc:
            log.warning("BGP session with %s closed: %s", peer_ip, exc)
            if exc.notification is not None:
                with contextlib.suppress(OSError):
                    writer.write(exc.notification.encode())
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.warning("BGP session with %s lost: %s", peer_ip, exc or "connection closed")
        finally:
            writer.close()
            if session is not None:
                if self.established.get(peer_ip) is session:
                    del self.established[peer_ip]
                source = f"session:{peer_ip}"
                self._emit_peer_down(PeerDown(time.time(), peer_ip, session.peer_asn, source))
            self.stats.flush()

    async def _open_confirm(
        self, peer_ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Established:
        mtype, body = await self._read(reader, OPEN_WAIT)
        if mtype == MSG_NOTIFICATION:
            raise SessionError(f"neighbour sent {Notification.decode(body)} instead of OPEN")
        if mtype != MSG_OPEN:
            raise SessionError(f"expected OPEN, got type {mtype}", Notification(FSM_ERROR))
        try:
            peer_open = Open.decode(body)
        except WireError as exc:
            raise SessionError(f"bad OPEN: {exc}", Notification(OPEN_ERROR)) from None
        if peer_open.version != 4:
            raise SessionError(
                f"BGP version {peer_open.version}", Notification(OPEN_ERROR, 1, b"\x00\x04")
            )
        expected = self.peers.get(peer_ip) if self.peers is not None else None
        if expected is not None and peer_open.asn != expected:
            raise SessionError(
                f"neighbour says AS{peer_open.asn}, configured AS{expected}",
                Notification(OPEN_ERROR, BAD_PEER_AS),
            )
        hold = min(self.open.hold_time, peer_open.hold_time)
        if hold in (1, 2):
            raise SessionError(
                f"hold time {hold}", Notification(OPEN_ERROR, UNACCEPTABLE_HOLD_TIME)
            )
        writer.write(KEEPALIVE)  # OpenConfirm: wait for the neighbour's KEEPALIVE
        mtype, body = await self._read(reader, hold or OPEN_WAIT)
        if mtype == MSG_NOTIFICATION:
            raise SessionError(f"neighbour sent {Notification.decode(body)} in OpenConfirm")
        if mtype != MSG_KEEPALIVE:
            raise SessionError(f"expected KEEPALIVE, got type {mtype}", Notification(FSM_ERROR))
        families = (peer_open.families or {(AFI_IPV4, SAFI_UNICAST)}) & FAMILIES
        session = Established(
            peer_ip,
            peer_open.asn,
            hold,
            peer_open.asn4,
            frozenset(families),
            peer_open.sends_path_ids_to(self.open),
        )
        if peer_ip in self.established:
            # RFC 4271 section 6.8: one session per neighbour. Passive and active both
            # configured (or a neighbour doing the same) can open a second one; keep the first,
            # so its routes are never withdrawn by the duplicate closing.
            raise SessionError(
                "a session with this neighbour is already Established",
                Notification(CEASE, CONNECTION_COLLISION),
            )
        self.established[peer_ip] = session
        log.info("BGP session with %s AS%d established: %s", peer_ip, session.peer_asn, session)
        return session

    async def _established(
        self,
        session: Established,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Read whatever has arrived and decode every whole message in it: one await per
        TCP read rather than two per message keeps up with a full-table burst."""
        keepalive = asyncio.ensure_future(self._send_keepalives(session.hold_time, writer))
        buf = b""
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(
                        reader.read(READ_SIZE), session.hold_time or None
                    )
                except TimeoutError:
                    raise SessionError(
                        "hold timer expired", Notification(HOLD_TIMER_EXPIRED)
                    ) from None
                if not chunk:
                    raise asyncio.IncompleteReadError(buf, None)
                buf += chunk
                off = 0
                while len(buf) - off >= HEADER_LEN:
                    try:
                        mtype, length = decode_header(buf, off)
                    except WireError as exc:
                        raise SessionError(str(exc), Notification(HEADER_ERROR)) from None
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
        source = f"session:{session.peer_ip}"
        if mtype == MSG_UPDATE:
            try:
                msg = decode_update(buf, start, end, asn4=session.asn4, add_path=session.add_path)
            except WireError as exc:
                # RFC 7606 would treat-as-withdraw; a monitor keeps the session and reports
                # the message instead of guessing which routes it meant.
                stats.bad_record(f"{source} message #{stats.records}", exc)
                return
            for update in msg.updates(time.time(), session.peer_ip, session.peer_asn, source):
                self._emit(update)
        elif mtype == MSG_NOTIFICATION:
            raise SessionError(f"neighbour sent {Notification.decode(buf[start:end])}")
        elif mtype != MSG_KEEPALIVE:
            raise SessionError(
                f"unexpected message type {mtype} when Established", Notification(FSM_ERROR)
            )

    @staticmethod
    async def _send_keepalives(hold_time: int, writer: asyncio.StreamWriter) -> None:
        if not hold_time:
            return  # hold time 0: no keepalives (RFC 4271 section 4.4)
        while True:
            writer.write(KEEPALIVE)
            await writer.drain()
            await asyncio.sleep(hold_time / 3)

    async def _read(self, reader: asyncio.StreamReader, timeout: float | None) -> tuple[int, bytes]:
        try:
            header = await asyncio.wait_for(reader.readexactly(HEADER_LEN), timeout)
        except TimeoutError:
            raise SessionError("hold timer expired", Notification(HOLD_TIMER_EXPIRED)) from None
        try:
            mtype, length = decode_header(header)
        except WireError as exc:
            raise SessionError(str(exc), Notification(HEADER_ERROR)) from None
        body = await reader.readexactly(length - HEADER_LEN)
        return mtype, body
