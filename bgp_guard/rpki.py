"""RPKI route-origin validation (RFC 6811) against a VRP file, and ROA changes between two.

VRP files: rpki-client `-j` and Routinator `--format json` output (`{"roas": [{"asn",
"prefix", "maxLength", "ta"}]}`, asn as 64500 or "AS64500"), or Routinator's CSV
(`ASN,IP Prefix,Max Length,Trust Anchor`).
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from bgp_guard.errors import InputError
from bgp_guard.prefixindex import PrefixIndex
from bgp_guard.update import PathElement, Prefix


class Vrp(NamedTuple):
    """A Validated ROA Payload (RFC 6811 section 2)."""

    asn: int
    prefix: Prefix
    max_length: int

    def __str__(self) -> str:
        return f"AS{self.asn} {self.prefix} max-length {self.max_length}"


class Validity(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    NOT_FOUND = "not-found"


class VrpSet:
    def __init__(self, vrps: Iterable[Vrp]) -> None:
        self.vrps = frozenset(vrps)
        self._index: PrefixIndex[Vrp] = PrefixIndex()
        for vrp in self.vrps:
            self._index.add(vrp.prefix, vrp)

    def __len__(self) -> int:
        return len(self.vrps)

    def covering(self, prefix: Prefix) -> list[Vrp]:
        return [vrp for _, vrps in self._index.covering(prefix) for vrp in vrps]

    def validate(self, prefix: Prefix, origin: PathElement | None) -> tuple[Validity, list[Vrp]]:
        return validate(prefix, origin, self.covering(prefix))


def validate(
    prefix: Prefix, origin: PathElement | None, candidates: list[Vrp]
) -> tuple[Validity, list[Vrp]]:
    """RFC 6811 section 2, given the VRPs covering `prefix`: the route is Valid if one matches
    its origin AS and its length is within maxLength, Invalid if VRPs cover it but none
    matches, else NotFound. An AS_SET origin (or none) is "NONE" and matches no VRP; AS0
    never matches (RFC 7607). Returns the matching VRP, or all candidates."""
    if not candidates:
        return Validity.NOT_FOUND, candidates
    if isinstance(origin, int) and origin != 0:
        for vrp in candidates:
            if vrp.asn == origin and prefix.length <= vrp.max_length:
                return Validity.VALID, [vrp]
    return Validity.INVALID, candidates


def load_vrps(path: str | Path) -> VrpSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read VRP file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(
            f"VRP file {path} is not UTF-8 text; give rpki-client -j or Routinator output"
        ) from None
    if not text.strip():
        # An empty file is a download cut short or a file being rewritten, never "no ROAs":
        # taking it would turn every announcement's RPKI state to not-found at once.
        raise InputError(f"VRP file {path} is empty; give rpki-client -j or Routinator output")
    if text.lstrip().startswith("{"):
        return VrpSet(_from_json(path, text))
    return VrpSet(_from_csv(path, text))


def _from_json(path: Path, text: str) -> Iterable[Vrp]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc}); give rpki-client -j output") from None
    roas = doc.get("roas") if isinstance(doc, dict) else None
    if not isinstance(roas, list):
        raise InputError(
            f"{path}: no 'roas' list; give rpki-client -j or Routinator --format json output"
        )
    out = []
    for i, roa in enumerate(roas):
        if not isinstance(roa, dict):
            _bad(path, f"roas[{i}]", "not an object")
        out.append(
            _vrp(path, f"roas[{i}]", roa.get("asn"), roa.get("prefix"), roa.get("maxLength"))
        )
    return out


def _from_csv(path: Path, text: str) -> Iterable[Vrp]:
    rows = list(csv.reader(text.splitlines()))
    if rows and rows[0] and not rows[0][0].upper().lstrip("AS").isdigit():
        rows = rows[1:]  # header
    out = []
    for i, row in enumerate(rows, start=2):
        if len(row) < 3:
            _bad(path, f"line {i}", "expected 'ASN,IP Prefix,Max Length[,Trust Anchor]'")
        out.append(_vrp(path, f"line {i}", row[0], row[1], row[2]))
    return out


def _vrp(path: Path, where: str, asn: Any, prefix: Any, max_length: Any) -> Vrp:
    text = str(asn).strip()
    digits = text[2:] if text[:2].upper() == "AS" else text
    try:
        parsed = Prefix.parse(str(prefix))
        vrp = Vrp(int(digits), parsed, int(max_length))
    except (TypeError, ValueError) as exc:
        _bad(path, where, f"{exc} (asn {asn!r}, prefix {prefix!r}, maxLength {max_length!r})")
    if not parsed.length <= vrp.max_length <= (32 if parsed.version == 4 else 128):
        _bad(path, where, f"maxLength {max_length} does not fit {prefix}")
    return vrp


def _bad(path: Path, where: str, problem: str) -> NoReturn:
    raise InputError(f"{path}: {where}: {problem}; fix or remove the entry")


class RoaChange(NamedTuple):
    vrp: Vrp
    added: bool


def diff(old: VrpSet, new: VrpSet) -> list[RoaChange]:
    """VRPs removed from `old` and added in `new`, in a stable order."""
    removed = [RoaChange(v, False) for v in old.vrps - new.vrps]
    added = [RoaChange(v, True) for v in new.vrps - old.vrps]
    return sorted(removed + added, key=lambda c: (c.vrp.prefix, c.vrp.asn, c.added))
