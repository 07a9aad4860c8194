"""Idempotent Open vSwitch configuration over OVSDB (RFC 7047), with python-ovs's IDL.

One `Ovsdb` talks to one ovsdb-server (every lab site runs its own). Each `ensure_*` call
is one transaction that changes only what differs from the wanted state, so running it
again changes nothing; `remove_*` of something absent is a no-op. Like `ovs-vsctl`, every
change bumps `next_cfg` and waits until ovs-vswitchd reports it applied (`cur_cfg`), so
OpenFlow port numbers are known when a call returns.

    with Ovsdb("unix:/run/overcast/hq/db.sock") as db:
        db.ensure_bridge("br-overcast", dpid=1, controllers=["tcp:192.0.2.10:6653"])
        db.ensure_port("br-overcast", "vx-fin-br", type="vxlan",
                       options={"remote_ip": "10.0.0.2", "key": "100"})
        db.ofports("br-overcast")   # {"br-overcast": 65534, "vx-fin-br": 1}

Not thread-safe, and blocking: use one per thread (never inside the os-ken event loop).
"""

from __future__ import annotations

import json
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

with warnings.catch_warnings():
    # python-ovs probes for eventlet monkey-patching, and importing eventlet warns that it
    # is deprecated on every run of every command; we do not use eventlet.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import ovs.db.data
    import ovs.db.error
    import ovs.db.idl
    import ovs.poller

# The tables we read and write; the IDL replicates only these.
_TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface", "Controller", "SSL")

FailMode = Literal["secure", "standalone"]


class OvsdbError(Exception):
    """An OVSDB operation failed; the message names the server and what to do."""


class Ovsdb:
    """A connection to one ovsdb-server holding an Open_vSwitch database."""

    def __init__(
        self, remote: str, *, timeout: float = 10.0, wait_for_vswitchd: bool = True
    ) -> None:
        """Connect to `remote` ("unix:/path/db.sock" or "tcp:HOST:PORT") and replicate it.

        `timeout` bounds every call (seconds). With `wait_for_vswitchd`, changes return only
        once ovs-vswitchd has applied them; turn it off to edit a database no switch runs on.
        """
        self.remote = remote
        self.timeout = timeout
        self.wait_for_vswitchd = wait_for_vswitchd
        schema = _fetch_schema(remote, timeout)
        helper = ovs.db.idl.SchemaHelper(schema_json=schema)
        for table in _TABLES:
            helper.register_table(table)
        self._idl = ovs.db.idl.Idl(remote, helper)
        try:
            self._run_until(lambda: self._idl.change_seqno > 0, "the first database sync")
        except OvsdbError:
            self._idl.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._idl.close()

    def __enter__(self) -> Ovsdb:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def bridges(self) -> list[str]:
        self._idl.run()
        return sorted(row.name for row in self._rows("Bridge"))

    def ports(self, bridge: str) -> list[str]:
        """Port names on `bridge`, including the bridge's own internal port."""
        self._idl.run()
        return sorted(port.name for port in self._bridge_or_fail(bridge).ports)

    def interfaces(self, bridge: str) -> dict[str, str]:
        """Interface.type of every interface on `bridge` (a bond's members each count), as
        stored: "" means "system", except for the bridge's own port, which is "internal"."""
        self._idl.run()
        return {
            iface.name: str(iface.type)
            for port in self._bridge_or_fail(bridge).ports
            for iface in port.interfaces
        }

    def ofports(self, bridge: str) -> dict[str, int]:
        """OpenFlow port number of each interface on `bridge` that ovs-vswitchd has added.

        The bridge's own port reports OFPP_LOCAL's OVS spelling, 65534.
        """
        self._idl.run()
        out: dict[str, int] = {}
        for port in self._bridge_or_fail(bridge).ports:
            for iface in port.interfaces:
                number = _optional(iface.ofport)
                if number is not None and number > 0:
                    out[iface.name] = number
        return out

    def ofport(self, name: str) -> int | None:
        """The OpenFlow port number of interface `name`, or None if it is not (yet) added."""
        self._idl.run()
        iface = self._find("Interface", name)
        number = _optional(iface.ofport) if iface is not None else None
        return number if number is not None and number > 0 else None

    def interface_error(self, name: str) -> str | None:
        """Why ovs-vswitchd could not add interface `name` (None if it could, or is absent)."""
        self._idl.run()
        iface = self._find("Interface", name)
        return _optional(iface.error) if iface is not None else None

    def bfd_status(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Interface.bfd_status of each named interface (state, remote_state, forwarding,
        flap_count, ...) as ovs-vswitchd last reported it; {} for one without BFD."""
        self._idl.run()
        rows = {row.name: row for row in self._rows("Interface") if row.name in names}
        return {n: dict(rows[n].bfd_status) if n in rows else {} for n in names}

    def external_ids(self, name: str) -> dict[str, str]:
        """Interface.external_ids of interface `name` ({} if it is absent)."""
        self._idl.run()
        iface = self._find("Interface", name)
        return dict(iface.external_ids) if iface is not None else {}

    def tagged(self, bridge: str, key: str) -> dict[str, str]:
        """Interfaces on `bridge` whose external_ids hold `key`: name -> its value."""
        self._idl.run()
        return {
            iface.name: iface.external_ids[key]
            for port in self._bridge_or_fail(bridge).ports
            for iface in port.interfaces
            if key in iface.external_ids
        }

    def set_external_id(self, name: str, key: str, value: str | None) -> None:
        """Set (or with None, remove) one external_ids key of interface `name`, if present."""

        def change(txn: ovs.db.idl.Transaction) -> None:
            iface = self._find("Interface", name)
            if iface is None:
                return
            ids = dict(iface.external_ids)
            if value is None:
                ids.pop(key, None)
            else:
                ids[key] = value
            _update(iface, "external_ids", ids)

        self._transact(change, f"set external_ids:{key} of {name}")

    def wait_for_change(self, timeout: float) -> None:
        """Block until the database changes or `timeout` seconds pass."""
        seqno = self._idl.change_seqno
        deadline = time.monotonic() + timeout
        while True:
            self._idl.run()
            remaining = deadline - time.monotonic()
            if self._idl.change_seqno != seqno or remaining <= 0:
                return
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            poller.timer_wait(max(int(remaining * 1000), 1))
            poller.block()

    def datapath_id(self, bridge: str) -> int | None:
        """The bridge's OpenFlow datapath id as ovs-vswitchd reports it."""
        self._idl.run()
        text = _optional(self._bridge_or_fail(bridge).datapath_id)
        return int(text, 16) if text else None

    def datapath_type(self, bridge: str) -> str:
        """The bridge's datapath: "netdev" (userspace) or "system" (OVS writes "" for it)."""
        self._idl.run()
        return str(self._bridge_or_fail(bridge).datapath_type) or "system"

    # -- writing -------------------------------------------------------------------------

    def ensure_bridge(
        self,
        name: str,
        *,
        datapath_type: str = "netdev",
        dpid: int | None = None,
        controllers: Sequence[str] = (),
        fail_mode: FailMode = "secure",
        protocols: Sequence[str] = ("OpenFlow13",),
    ) -> None:
        """Make bridge `name` exist with exactly these settings.

        `fail_mode="secure"` keeps the switch from falling back to NORMAL (learning switch)
        when no controller is connected: without the controller, nothing is forwarded.
        `controllers` are OpenFlow targets such as "tcp:192.0.2.10:6653".
        """
        if dpid is not None and not 0 <= dpid < 2**64:
            raise OvsdbError(f"dpid {dpid} does not fit in 64 bits; use 1..2**64-1")

        def change(txn: ovs.db.idl.Transaction) -> None:
            root = self._root(txn)
            br = self._find("Bridge", name)
            if br is None:
                br = txn.insert(self._idl.tables["Bridge"])
                _set(br, "name", name)
                # Like ovs-vsctl add-br: the bridge's own internal port, OFPP_LOCAL.
                _set(br, "ports", [self._new_port(txn, name, "internal", {})])
                root.addvalue("bridges", br.uuid)
            _update(br, "datapath_type", datapath_type)
            _update(br, "fail_mode", [fail_mode])
            _update(br, "protocols", sorted(protocols))
            other = dict(_current(br, "other_config") or {})
            if dpid is not None:
                other["datapath-id"] = f"{dpid:016x}"
            else:
                other.pop("datapath-id", None)
            _update(br, "other_config", other)
            if sorted(c.target for c in _current(br, "controller") or []) != sorted(controllers):
                rows = []
                for target in controllers:
                    row = txn.insert(self._idl.tables["Controller"])
                    _set(row, "target", target)
                    rows.append(row)
                _set(br, "controller", rows)

        self._transact(change, f"ensure bridge {name}")

    def ensure_port(
        self,
        bridge: str,
        name: str,
        *,
        type: str = "",
        options: Mapping[str, str] | None = None,
        ofport_request: int | None = None,
        bfd: Mapping[str, str] | None = None,
        mtu_request: int | None = None,
    ) -> int | None:
        """Make port `name` (one interface of the same name) exist on `bridge` as given.

        `type` is an OVS interface type: "" for a Linux device such as a veth end, "vxlan",
        "internal", ...; `options` its options (e.g. remote_ip, key, dst_port). Returns the
        OpenFlow port number (None when not waiting for ovs-vswitchd). Raises OvsdbError
        naming ovs-vswitchd's reason if it could not add the port.
        """
        if ofport_request is not None and not 1 <= ofport_request <= 65279:
            raise OvsdbError(
                f"ofport_request {ofport_request} for port {name} is out of range; use 1..65279"
            )

        def change(txn: ovs.db.idl.Transaction) -> None:
            br = self._find("Bridge", bridge)
            if br is None:
                raise OvsdbError(
                    f"bridge {bridge} does not exist on {self.remote}; call ensure_bridge first"
                )
            port = self._find("Port", name)
            if port is not None and port not in br.ports:
                raise OvsdbError(
                    f"port {name} already belongs to bridge {self._owner(port)}; "
                    f"remove it there first (remove_port) or pick another name"
                )
            if port is None:
                port = self._new_port(txn, name, type, options or {})
                br.addvalue("ports", port.uuid)
            iface = next((i for i in port.interfaces if i.name == name), None)
            if iface is None:
                raise OvsdbError(
                    f"port {name} on {bridge} has no interface named {name} (a bond?); "
                    "remove it and let ensure_port create it"
                )
            _update(iface, "type", type)
            _update(iface, "options", dict(options or {}))
            _update(iface, "ofport_request", [] if ofport_request is None else [ofport_request])
            _update(iface, "bfd", dict(bfd or {}))
            _update(iface, "mtu_request", [] if mtu_request is None else [mtu_request])

        self._transact(change, f"ensure port {name} on {bridge}")
        if not self.wait_for_vswitchd:
            return None
        number = self.ofport(name)
        if number is None:
            reason = self.interface_error(name) or "no reason given; see ovs-vswitchd.log"
            raise OvsdbError(f"ovs-vswitchd could not add port {name} to {bridge}: {reason}")
        return number

    def remove_port(self, bridge: str, name: str) -> None:
        """Remove port `name` from `bridge`; a port that is not there is fine."""

        def change(txn: ovs.db.idl.Transaction) -> None:
            br = self._find("Bridge", bridge)
            port = self._find("Port", name)
            if br is None or port is None or port not in br.ports:
                return
            # Port and Interface are not root tables: OVSDB garbage-collects them once no
            # bridge refers to them (RFC 7047 section 3.2).
            br.delvalue("ports", port.uuid)

        self._transact(change, f"remove port {name} from {bridge}")

    def remove_bridge(self, name: str) -> None:
        """Remove bridge `name` with its ports and controllers; an absent bridge is fine."""

        def change(txn: ovs.db.idl.Transaction) -> None:
            br = self._find("Bridge", name)
            if br is not None:
                self._root(txn).delvalue("bridges", br.uuid)

        self._transact(change, f"remove bridge {name}")

    def ensure_ssl(self, private_key: str, certificate: str, ca_cert: str) -> None:
        """The switch's TLS identity for "ssl:" controller targets: PEM file paths that
        ovs-vswitchd reads (in its own mount namespace). It trusts controllers whose
        certificate `ca_cert` signed, and shows them `certificate`."""

        def change(txn: ovs.db.idl.Transaction) -> None:
            root = self._root(txn)
            current = _optional(_current(root, "ssl") or [])
            row = current if current is not None else txn.insert(self._idl.tables["SSL"])
            _update(row, "private_key", private_key)
            _update(row, "certificate", certificate)
            _update(row, "ca_cert", ca_cert)
            if current is None:
                _set(root, "ssl", [row])

        self._transact(change, "ensure SSL settings")

    def remove_ssl(self) -> None:
        """Forget the switch's TLS settings; absent settings are fine."""

        def change(txn: ovs.db.idl.Transaction) -> None:
            root = self._root(txn)
            if _current(root, "ssl"):
                _set(root, "ssl", [])

        self._transact(change, "remove SSL settings")

    # -- internals -----------------------------------------------------------------------

    def _rows(self, table: str) -> list[Any]:
        return list(self._idl.tables[table].rows.values())

    def _find(self, table: str, name: str) -> Any:
        return next((row for row in self._rows(table) if row.name == name), None)

    def _bridge_or_fail(self, name: str) -> Any:
        br = self._find("Bridge", name)
        if br is None:
            known = ", ".join(self.bridges()) or "none"
            raise OvsdbError(f"bridge {name} does not exist on {self.remote} (bridges: {known})")
        return br

    def _owner(self, port: Any) -> str:
        return next((b.name for b in self._rows("Bridge") if port in b.ports), "?")

    def _root(self, txn: ovs.db.idl.Transaction) -> Any:
        rows = self._rows("Open_vSwitch")
        if rows:
            return rows[0]
        # A fresh database (ovsdb-tool create) has no root row until `ovs-vsctl init`.
        return txn.insert(self._idl.tables["Open_vSwitch"])

    def _new_port(
        self, txn: ovs.db.idl.Transaction, name: str, type: str, options: Mapping[str, str]
    ) -> Any:
        iface = txn.insert(self._idl.tables["Interface"])
        _set(iface, "name", name)
        _set(iface, "type", type)
        _set(iface, "options", dict(options))
        port = txn.insert(self._idl.tables["Port"])
        _set(port, "name", name)
        _set(port, "interfaces", [iface])
        return port

    def _transact(self, change: Callable[[ovs.db.idl.Transaction], None], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        target = self._commit_change(change, what, deadline)
        if target is not None:
            self._run_until(
                lambda: self._rows("Open_vSwitch")[0].cur_cfg >= target,
                f"ovs-vswitchd applying '{what}' (is ovs-vswitchd running on this database?)",
                deadline,
            )

    def _commit_change(
        self, change: Callable[[ovs.db.idl.Transaction], None], what: str, deadline: float
    ) -> int | None:
        """Commit `change`, retrying on conflicts; the `next_cfg` to wait for, if any."""
        while True:
            self._idl.run()
            txn = ovs.db.idl.Transaction(self._idl)
            try:
                change(txn)
            except BaseException:
                txn.abort()
                raise
            bump = self.wait_for_vswitchd and bool(txn._txn_rows)
            if bump:
                self._root(txn).increment("next_cfg")
            status = self._commit(txn, what, deadline)
            if status == ovs.db.idl.Transaction.TRY_AGAIN:
                # Someone else changed a row we read; re-read and try again.
                self._wait(deadline, what)
                continue
            if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
                raise OvsdbError(f"{what} failed on {self.remote}: {status}: {txn.get_error()}")
            if bump and status == ovs.db.idl.Transaction.SUCCESS:
                new_cfg: int = txn.get_increment_new_value()
                return new_cfg
            return None

    def _commit(self, txn: ovs.db.idl.Transaction, what: str, deadline: float) -> str:
        while True:
            status: str = txn.commit()
            if status != ovs.db.idl.Transaction.INCOMPLETE:
                return status
            self._idl.run()
            self._wait(deadline, what, txn)

    def _run_until(self, done: Callable[[], bool], what: str, deadline: float = 0.0) -> None:
        deadline = deadline or time.monotonic() + self.timeout
        while True:
            self._idl.run()
            if done():
                return
            self._wait(deadline, what)

    def _wait(self, deadline: float, what: str, txn: ovs.db.idl.Transaction | None = None) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OvsdbError(
                f"timed out after {self.timeout:g}s waiting for {what} on {self.remote}"
            )
        poller = ovs.poller.Poller()
        self._idl.wait(poller)
        if txn is not None:
            txn.wait(poller)
        poller.timer_wait(int(min(remaining, 0.5) * 1000))
        poller.block()


def _optional(value: Any) -> Any:
    """The value of an optional (0 or 1 element) OVSDB column, or None."""
    return value[0] if value else None


def _set(row: Any, column: str, value: Any) -> None:
    # python-ovs logs and drops a bad value on assignment; check first so it is an error.
    try:
        ovs.db.data.Datum.from_python(
            row._table.columns[column].type, value, ovs.db.idl._row_to_uuid
        )
    except ovs.db.error.Error as exc:
        raise OvsdbError(f"bad value {value!r} for {row._table.name}.{column}: {exc}") from None
    setattr(row, column, value)


def _current(row: Any, column: str) -> Any:
    """The column's value, or None for a row this transaction inserts (it has none yet)."""
    return getattr(row, column) if row._data is not None else None


def _update(row: Any, column: str, value: Any) -> None:
    """Write `column` only if it differs, so re-applying the same state changes nothing."""
    if _current(row, column) != value:
        _set(row, column, value)


def _fetch_schema(remote: str, timeout: float) -> dict[str, Any]:
    """Ask the server for the Open_vSwitch schema (RFC 7047 section 4.1.2) with a deadline.

    A plain socket, not python-ovs's session, so a missing or dead server is a clear error
    at once rather than an endless reconnect loop.
    """
    with _connect(remote, timeout) as sock:
        request = {"method": "get_schema", "params": ["Open_vSwitch"], "id": 0}
        sock.sendall(json.dumps(request).encode())
        decoder, buf = json.JSONDecoder(), ""
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise OvsdbError(
                    f"ovsdb-server at {remote} did not answer within {timeout:g}s"
                ) from None
            if not chunk:
                raise OvsdbError(f"ovsdb-server at {remote} closed the connection")
            buf += chunk.decode()
            try:
                reply, _ = decoder.raw_decode(buf.lstrip())
            except json.JSONDecodeError:
                continue
            if reply.get("error"):
                raise OvsdbError(
                    f"{remote} has no Open_vSwitch database ({reply['error']}); "
                    "create it with: ovsdb-tool create conf.db vswitch.ovsschema"
                )
            result: dict[str, Any] = reply["result"]
            return result


def _connect(remote: str, timeout: float) -> socket.socket:
    kind, _, where = remote.partition(":")
    if kind == "unix":
        if not Path(where).exists():
            raise OvsdbError(
                f"OVSDB socket {where} does not exist; start ovsdb-server with "
                f"--remote=punix:{where} (the lab starts one per site)"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = where
    elif kind == "tcp":
        host, _, port = where.rpartition(":")
        if not host or not port.isdigit():
            raise OvsdbError(f"bad OVSDB remote {remote!r}; write tcp:HOST:PORT")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock, address = socket.socket(family, socket.SOCK_STREAM), (host.strip("[]"), int(port))
    else:
        raise OvsdbError(f"bad OVSDB remote {remote!r}; use unix:/path/db.sock or tcp:HOST:PORT")
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError as exc:
        sock.close()
        raise OvsdbError(
            f"cannot connect to ovsdb-server at {remote}: {exc.strerror or exc}; "
            "is ovsdb-server running?"
        ) from None
    return sock
