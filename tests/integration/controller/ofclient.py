"""A switch's side of OpenFlow 1.3 over a real socket, just enough to talk to our controller:
hello, features, port descriptions, empty flow and group tables, barriers and echoes.
It records what the controller sent, and can send any bytes (for hostile-input tests).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from tests.openflow_samples import PORT_DESC, Wire, features_reply, hello, message, multipart, port

HELLO, ERROR, ECHO_REQUEST, FEATURES_REQUEST, MULTIPART_REQUEST, BARRIER_REQUEST = (
    0,
    1,
    2,
    5,
    18,
    20,
)


class SwitchClient:
    def __init__(self, address: tuple[str, int], dpid: int = 0, ports: tuple[str, ...] = ()):
        self.sock = socket.create_connection(address, timeout=5)
        self.dpid, self.ports = dpid, ports
        self.received: list[int] = []  # message types the controller sent
        self.closed = False
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hello(self, answer: bool = True) -> None:
        """Exchange HELLOs. With `answer`, reply to what comes with it (the controller's
        FEATURES_REQUEST may arrive in the same read); without, stay anonymous."""
        self.send(hello(4).data)
        self._read_until(lambda: HELLO in self.received, 5, answer=answer)

    def handshake(self) -> None:
        """Hello, then answer until the controller has programmed us (its first barrier)."""
        self.hello()
        self.serve_until(lambda: BARRIER_REQUEST in self.received, 10)

    def serve_until(self, done: Callable[[], bool], timeout: float) -> None:
        self._read_until(done, timeout, answer=True)

    def closed_by_controller(self, timeout: float = 5.0) -> bool:
        """True once the controller has closed the connection (EOF or reset)."""
        try:
            self._read_until(lambda: self.closed, timeout)
        except TimeoutError:
            return False
        return True

    def _read_until(self, done: Callable[[], bool], timeout: float, answer: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.closed:
                raise ConnectionError("the controller closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer from the controller within {timeout:g}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self._buf += chunk
            while len(self._buf) >= 8:
                (length,) = struct.unpack_from("!H", self._buf, 2)
                if len(self._buf) < length:
                    break
                msg, self._buf = self._buf[:length], self._buf[length:]
                self.received.append(msg[1])
                if answer:
                    try:
                        self._answer(msg)
                    except (BrokenPipeError, ConnectionResetError):
                        self.closed = True

    def _answer(self, msg: bytes) -> None:
        type_, xid = msg[1], struct.unpack_from("!I", msg, 4)[0]
        if type_ == ECHO_REQUEST:
            self.send(message(3, Wire(msg[8:]), xid).data)
        elif type_ == FEATURES_REQUEST:
            self.send(features_reply(self.dpid, xid).data)
        elif type_ == BARRIER_REQUEST:
            self.send(message(21, Wire(b""), xid).data)
        elif type_ == MULTIPART_REQUEST:
            (mp_type,) = struct.unpack_from("!H", msg, 8)
            entries = (
                [port(i + 1, name) for i, name in enumerate(self.ports)]
                if mp_type == PORT_DESC
                else []
            )
            reply = multipart(mp_type, *entries)
            self.send(reply.data[:4] + struct.pack("!I", xid) + reply.data[8:])
