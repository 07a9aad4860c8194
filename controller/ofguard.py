"""Every message a switch sends is checked (`controller.ofcheck`) before os-ken parses it.

os-ken reads each message in the connection's receive loop through one module function,
`os_ken.ofproto.ofproto_parser.msg`. `install()` replaces it with `_guarded_msg`, which
refuses a message whose lengths do not add up, and also any that os-ken's own parser
raises on (os-ken would log a traceback and, for a truncated message, drop the
connection with another). A refused message is counted, logged with the peer's address,
and that connection is closed; every other switch keeps being served. The upstream fix
for the parser loops is in controller/upstream/. Checked packet-ins can skip os-ken
altogether (`install(inbox)`, `controller.packetin`).
"""

from __future__ import annotations

import logging
from typing import Any

from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_parser
from prometheus_client import Counter

from controller.ofcheck import Malformed, check, message_name
from controller.packetin import Inbox
from overcast.metrics import REGISTRY

log = logging.getLogger(__name__)

MALFORMED = Counter(
    "overcast_controller_malformed_messages_total",
    "OpenFlow messages refused before parsing (bad lengths, or os-ken could not parse "
    "them); each closes its connection. By message type.",
    ["message"],
    registry=REGISTRY,
)

_original = ofproto_parser.msg


_inbox: Inbox | None = None
OFPT_PACKET_IN = 10


def install(inbox: Inbox | None = None) -> None:
    """Route os-ken's message parsing through the guard (idempotent). With `inbox`, the
    packet-ins of switches past their handshake go there, not through os-ken's parser and
    event queue (`controller.packetin`)."""
    global _inbox
    _inbox = inbox
    ofproto_parser.msg = _guarded_msg


def _guarded_msg(
    datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytearray
) -> Any:
    if datapath.state == DEAD_DISPATCHER:
        return None  # closed for an earlier message: ignore what it had already sent
    data = bytes(buf)
    try:
        check(data)
        if _inbox is not None:
            if msg_type == OFPT_PACKET_IN:
                if datapath.state == MAIN_DISPATCHER:  # as os-ken's handlers require
                    _inbox.put(datapath, data)
                return None
            _inbox.cut()  # this switch's later packet-ins come after this message
        parser = ofproto_parser._MSG_PARSERS[version]
        return parser(datapath, version, msg_type, msg_len, xid, buf)
    except Malformed as exc:
        reason = str(exc)
    except Exception as exc:  # os-ken's parser failed on lengths that add up
        reason = f"os-ken could not parse it: {type(exc).__name__}: {exc}"[:300]
    name = message_name(data)
    MALFORMED.labels(name).inc()
    peer = "{}:{}".format(*datapath.address[:2]) if datapath.address else "?"
    dpid = f"dpid {datapath.id:#x}" if datapath.id is not None else "before its features reply"
    log.warning(
        "closing the OpenFlow connection from %s (%s): malformed %s message (%d bytes): %s",
        peer,
        dpid,
        name,
        len(data),
        reason,
    )
    datapath.close()
    return None
