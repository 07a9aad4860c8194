"""OpenFlow 1.3 messages as small immutable values: what the pure pipeline emits.

No os-ken objects here: `controller.app` translates these to the wire, `controller.
fakeoftable` applies them to a model switch, and both read the same few fields. Field
names follow the OXM names of OpenFlow 1.3 section 7.2.3.7 (`in_port`, `metadata`,
`eth_dst`, ...), which are also os-ken's `OFPMatch` keyword names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# A masked value: (value, mask). Unmasked fields are plain ints or strings.
Masked = tuple[int, int] | tuple[str, str]
FieldValue = int | str | Masked


@dataclass(frozen=True, order=True)
class Match:
    """OXM fields to match; absent fields are wildcards. Kept sorted so equal matches compare."""

    fields: tuple[tuple[str, FieldValue], ...] = ()

    @staticmethod
    def of(**fields: FieldValue) -> Match:
        return Match(tuple(sorted(fields.items())))

    def get(self, name: str) -> FieldValue | None:
        return dict(self.fields).get(name)

    def __str__(self) -> str:
        return ",".join(f"{k}={_show(v)}" for k, v in self.fields) or "*"


@dataclass(frozen=True, order=True)
class Output:
    port: int

    def __str__(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True, order=True)
class ToGroup:
    group_id: int

    def __str__(self) -> str:
        return f"group:{self.group_id}"


@dataclass(frozen=True, order=True)
class ToController:
    """Output to the controller as a packet-in, the frame's first `max_len` bytes
    (OFPP_CONTROLLER, section 7.2.5): enough for the Ethernet, ARP and ND headers."""

    max_len: int = 128

    def __str__(self) -> str:
        return f"controller:{self.max_len}"


@dataclass(frozen=True, order=True)
class ToInPort:
    """Output back where the frame came in (OFPP_IN_PORT, section 7.2.1): an answer."""

    def __str__(self) -> str:
        return "in_port"


@dataclass(frozen=True, order=True)
class SetField:
    """Set a header field (OFPAT_SET_FIELD, section 7.2.5) by its OXM name, or one of Open
    vSwitch's ND fields (`nd_reserved`, `nd_options_type`: ovs-fields(7))."""

    field: str
    value: int | str

    def __str__(self) -> str:
        return f"set:{self.field}={_show(self.value)}"


@dataclass(frozen=True, order=True)
class Move:
    """Copy one whole header field into another of the same width (Open vSwitch's
    NXAST_REG_MOVE; OpenFlow 1.3 has no copy action)."""

    src: str
    dst: str

    def __str__(self) -> str:
        return f"move:{self.src}->{self.dst}"


Action = Output | ToGroup | ToController | ToInPort | SetField | Move


@dataclass(frozen=True, order=True)
class Flow:
    """One flow entry. Identity on the switch is (table, priority, match).

    Instructions run in OpenFlow order (section 5.9): apply-actions, write-metadata, goto.
    No actions and no goto means drop.
    """

    table: str
    priority: int
    match: Match
    cookie: int
    actions: tuple[Action, ...] = ()
    write_metadata: tuple[int, int] | None = None
    goto: str | None = None
    # Seconds without a matching frame before the switch removes the entry (0: never),
    # and whether it then tells the controller (OFPFF_SEND_FLOW_REM, section 6.5).
    idle_timeout: int = 0
    notify_removed: bool = False

    @property
    def key(self) -> tuple[str, int, Match]:
        return (self.table, self.priority, self.match)

    def __str__(self) -> str:
        parts = [str(a) for a in self.actions]
        if self.write_metadata is not None:
            parts.append(f"write_metadata:{_show(self.write_metadata)}")
        if self.goto is not None:
            parts.append(f"goto:{self.goto}")
        does = ",".join(parts) or "drop"
        if self.idle_timeout:
            does += f" idle_timeout={self.idle_timeout}" + (
                " notify" if self.notify_removed else ""
            )
        return (
            f"table={self.table} priority={self.priority} cookie={self.cookie:#x} "
            f"{self.match} -> {does}"
        )


@dataclass(frozen=True, order=True)
class Group:
    """An OpenFlow 1.3 group (section 5.6.1). `all`: every bucket gets a copy. `ff` (fast
    failover): the first bucket whose watched port is live gets it, decided by the switch
    alone; `watch` holds each bucket's port, in bucket order."""

    group_id: int
    type: Literal["all", "ff"]
    buckets: tuple[tuple[Action, ...], ...] = field(default=())
    watch: tuple[int, ...] = ()

    def __str__(self) -> str:
        watch = self.watch or (None,) * len(self.buckets)
        buckets = " ".join(
            "[" + (f"watch:{w} " if w is not None else "") + ",".join(map(str, b)) + "]"
            for b, w in zip(self.buckets, watch, strict=True)
        )
        return f"group={self.group_id} type={self.type} {buckets or '(no buckets: drop)'}"


# -- messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AddFlow:
    """OFPFC_ADD: replaces an entry with the same table, priority and match (section 6.4)."""

    flow: Flow


@dataclass(frozen=True)
class DeleteFlow:
    """OFPFC_DELETE_STRICT of exactly this (table, priority, match)."""

    flow: Flow


@dataclass(frozen=True)
class ClearFlows:
    """OFPFC_DELETE in every table with no match: the switch starts from nothing."""


@dataclass(frozen=True)
class AddGroup:
    group: Group


@dataclass(frozen=True)
class ModifyGroup:
    group: Group


@dataclass(frozen=True)
class DeleteGroup:
    group_id: int


@dataclass(frozen=True)
class ClearGroups:
    """OFPGC_DELETE of OFPG_ALL."""


@dataclass(frozen=True)
class Barrier:
    """Everything before is done before anything after (section 6.2)."""


Message = (
    AddFlow | DeleteFlow | ClearFlows | AddGroup | ModifyGroup | DeleteGroup | ClearGroups | Barrier
)


def _show(value: FieldValue | tuple[int, int]) -> str:
    if isinstance(value, tuple):
        v, m = value
        return f"{v:#x}/{m:#x}" if isinstance(v, int) and isinstance(m, int) else f"{v}/{m}"
    return f"{value:#x}" if isinstance(value, int) and value > 0xFFFF else str(value)
