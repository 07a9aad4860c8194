"""ASPA (Autonomous System Provider Authorization) objects and AS_PATH verification.

An ASPA is signed by a customer AS and lists the ASes it lets carry its routes upwards (its
providers); AS0 alone means "no providers at all". Verification follows
draft-ietf-sidrops-aspa-verification-28 (August 2026); section numbers below are that
version's. ASPA files: rpki-client `-j` (`"aspas": [{"customer_asid", "providers"}]`, and
rpki-client 7.x/8.0's per-AFI `"provider_authorizations": {"ipv4": [...], "ipv6": [...]}`),
Routinator `--enable-aspa --format json|jsonext` (`"aspas": [{"customer": "AS64496",
"providers": ["AS64499"]}]`, with an `"afi"` per object in 0.13 and before), or a CSV
(`customer,providers[,afi]`, providers separated by spaces or semicolons). Provider limits
to one address family, from ASPA profile versions before the current one (which dropped
them), are kept: a v4-only provider is a provider for IPv4 routes only.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from bgp_guard.errors import InputError
from bgp_guard.update import PathElement

ASN_MAX = 2**32 - 1
FORMATS = "rpki-client -j output, Routinator --enable-aspa json/jsonext output, or a CSV"


class Aspa(NamedTuple):
    customer: int
    providers: frozenset[int]
    afi: int | None = None  # 4 or 6: this ASPA (or these providers) for one family only


class Hop(enum.Enum):
    """The hop check of section 5.3: is `provider` an attested provider of `customer`?"""

    NO_ATTESTATION = "no attestation"  # the customer published no ASPA
    PROVIDER = "provider+"
    NOT_PROVIDER = "not provider+"


class Outcome(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class Procedure(enum.Enum):
    # Section 5.5: routes from a customer, a lateral peer, a route server or an RS-client
    # must have climbed all the way from the origin.
    UPSTREAM = "upstream"
    # Section 5.6: routes from a provider (and, for a monitor, from a collector's peers,
    # who send their full table as to a customer) may have climbed, crossed once and fallen.
    DOWNSTREAM = "downstream"


class Verdict(NamedTuple):
    outcome: Outcome
    reason: str = ""  # for Invalid: which hop fails and why
    offender: int | None = None  # the AS that leaked or forged, when one AS is to blame


VALID = Verdict(Outcome.VALID)
UNKNOWN = Verdict(Outcome.UNKNOWN)


class AspaSet:
    """Provider sets per customer AS and address family. Several ASPAs of one customer
    (from several CAs, or per-AFI ones) are merged: section 5.3 uses the union of the
    provider sets of all of a customer's ASPAs."""

    def __init__(self, aspas: Iterable[Aspa] = ()) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for aspa in aspas:
            for afi, table in ((4, v4), (6, v6)):
                if aspa.afi in (None, afi):
                    table.setdefault(aspa.customer, set()).update(aspa.providers)
        self._tables: dict[int, dict[int, frozenset[int]]] = {
            4: {c: frozenset(p) for c, p in v4.items()},
            6: {c: frozenset(p) for c, p in v6.items()},
        }

    def __len__(self) -> int:
        return len(self._tables[4].keys() | self._tables[6].keys())

    def customers(self) -> set[int]:
        return set(self._tables[4]) | set(self._tables[6])

    def providers(self, customer: int, version: int = 4) -> frozenset[int] | None:
        """The attested providers of `customer` for routes of IP `version`; None: no ASPA."""
        return self._tables[version].get(customer)

    def table(self, version: int) -> dict[int, frozenset[int]]:
        return self._tables[version]

    def hop(self, customer: int, provider: int, version: int = 4) -> Hop:
        """Section 5.3, authorized(customer, provider)."""
        providers = self._tables[version].get(customer)
        if providers is None:
            return Hop.NO_ATTESTATION
        return Hop.PROVIDER if provider in providers else Hop.NOT_PROVIDER


def changed_customers(old: AspaSet, new: AspaSet) -> set[int]:
    """Customer ASes whose provider set (for either family) differs between `old` and `new`:
    only paths through one of them can verify differently."""
    out: set[int] = set()
    for version in (4, 6):
        a, b = old.table(version), new.table(version)
        out.update(c for c in a.keys() | b.keys() if a.get(c) != b.get(c))
    return out


# --- Verification (section 5) -----------------------------------------------------------


def compress(as_path: tuple[PathElement, ...]) -> list[int] | None:
    """Section 5.2: the path with prepends collapsed, origin FIRST (AS(1) .. AS(N)); None if
    it holds an AS_SET."""
    out: list[int] = []
    last: PathElement | None = None
    for element in reversed(as_path):
        if element != last:
            if type(element) is not int:
                return None
            out.append(element)
            last = element
    return out


def verify(
    as_path: tuple[PathElement, ...],
    aspas: AspaSet,
    procedure: Procedure,
    version: int = 4,
    neighbour_asn: int | None = None,
) -> Verdict:
    """Verify an AS path (as received: neighbour first, origin last) with `procedure`.
    `neighbour_asn`, if given, is the AS of the BGP neighbour the route came from, which
    must be the path's first AS (step 2; left out for a transparent route server)."""
    if not as_path:
        return Verdict(Outcome.INVALID, "the AS path is empty (step 1)")  # step 1
    if neighbour_asn is not None and as_path[0] != neighbour_asn:  # step 2
        return Verdict(
            Outcome.INVALID,
            f"the path does not start with the neighbour AS{neighbour_asn} that sent it (step 2)",
            neighbour_asn,
        )
    path = compress(as_path)
    if path is None:  # step 3: RFC 9774 deprecates AS_SET; section 5.1 makes such paths Invalid
        sets = " ".join(
            "{" + " ".join(map(str, sorted(e))) + "}" for e in as_path if isinstance(e, frozenset)
        )
        return Verdict(
            Outcome.INVALID, f"the path holds the AS_SET {sets} (RFC 9774, step 3)", None
        )
    table = aspas.table(version)
    n = len(path)
    # Section 5.4, from the origin: the first hop that is not Provider+ ends min_up_ramp,
    # the first Not Provider+ ends max_up_ramp.
    min_up = max_up = n
    up_cut = -1  # index of the customer whose hop is the first Not Provider+
    for k in range(n - 1):
        providers = table.get(path[k])
        if providers is None:
            if min_up == n:
                min_up = k + 1
        elif path[k + 1] not in providers:
            if min_up == n:
                min_up = k + 1
            max_up, up_cut = k + 1, k
            break
    if procedure is Procedure.UPSTREAM:  # section 5.5 steps 4-6
        if max_up < n:
            return _up_invalid(path, up_cut, table)
        return UNKNOWN if min_up < n else VALID
    # Section 5.6: the down ramp, from the neighbour end: the last hop (nearest the
    # neighbour) AS(j+1) -> AS(j) whose AS(j) is not Provider+ of AS(j+1) ends it.
    min_down = max_down = n
    down_cut = -1  # index m: AS(m) -> AS(m+1) is the hop that is not a descent
    for m in range(n - 1, 0, -1):
        providers = table.get(path[m])
        if providers is None:
            if min_down == n:
                min_down = n - m
        elif path[m - 1] not in providers:
            if min_down == n:
                min_down = n - m
            max_down, down_cut = n - m, m
            break
    if max_up + max_down < n:
        return _valley(path, up_cut, down_cut, table)
    return UNKNOWN if min_up + min_down < n else VALID


def _attested(customer: int, table: dict[int, frozenset[int]]) -> str:
    providers = table[customer]
    if providers <= {0}:
        return f"AS{customer}'s ASPA says it has no providers (AS0)"
    listed = sorted(p for p in providers if p)
    shown = ", ".join(f"AS{p}" for p in listed[:5]) + (", ..." if len(listed) > 5 else "")
    return f"AS{customer}'s ASPA lists {shown}"


def _up_invalid(path: list[int], k: int, table: dict[int, frozenset[int]]) -> Verdict:
    customer, claimed = path[k], path[k + 1]
    return Verdict(
        Outcome.INVALID,
        f"AS{claimed} is not an attested provider of AS{customer} ({_attested(customer, table)}), "
        f"yet a route from a customer or peer must have climbed every hop from the origin: "
        f"AS{claimed} leaked the route it heard from AS{customer}, or the path is forged",
        claimed,
    )


def _valley(path: list[int], k: int, m: int, table: dict[int, frozenset[int]]) -> Verdict:
    """max_up_ramp + max_down_ramp < N: the ramps cannot meet, so some AS between them passed
    a route learned from a peer or provider to another peer or provider."""
    low, high = path[k + 1], path[m - 1]  # the ASes between the ramps, origin side first
    who = f"AS{low} leaked it" if low == high else f"it leaked between AS{low} and AS{high}"
    return Verdict(
        Outcome.INVALID,
        f"AS{low} is not an attested provider of AS{path[k]} ({_attested(path[k], table)}) "
        f"and AS{high} is not an attested provider of AS{path[m]} "
        f"({_attested(path[m], table)}): the route went down or across to AS{low} and then "
        f"up or across to AS{path[m]}, so {who}",
        low if low == high else None,
    )


# --- Files ----------------------------------------------------------------------------


def load_aspas(path: str | Path) -> AspaSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read ASPA file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"ASPA file {path} is not UTF-8 text; give {FORMATS}") from None
    if not text.strip():
        # Half-written or cut short, never "nobody has an ASPA": taking it would turn every
        # Invalid into Unknown at once.
        raise InputError(f"ASPA file {path} is empty; give {FORMATS}")
    if text.lstrip().startswith("{"):
        return AspaSet(_from_json(path, text))
    return AspaSet(_from_csv(path, text))


def _from_json(path: Path, text: str) -> list[Aspa]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc}); give {FORMATS}") from None
    if not isinstance(doc, dict):
        _bad(path, "top level", "not a JSON object")
    out: list[Aspa] = []
    aspas = doc.get("aspas")
    per_afi = doc.get("provider_authorizations")
    if isinstance(aspas, list):
        for i, entry in enumerate(aspas):
            out += _entry(path, f"aspas[{i}]", entry, None)
    elif isinstance(per_afi, dict):  # rpki-client 7.x/8.0
        for key, afi in (("ipv4", 4), ("ipv6", 6)):
            entries = per_afi.get(key, [])
            if not isinstance(entries, list):
                _bad(path, f"provider_authorizations.{key}", "not a list")
            where = f"provider_authorizations.{key}"
            for i, entry in enumerate(entries):
                out += _entry(path, f"{where}[{i}]", entry, afi)
    else:
        raise InputError(
            f"{path}: no 'aspas' list; give rpki-client -j output (without -A), or run "
            "Routinator with --enable-aspa and --format json or jsonext"
        )
    return out


def _entry(path: Path, where: str, entry: Any, afi: int | None) -> list[Aspa]:
    if not isinstance(entry, dict):
        _bad(path, where, "not an object")
    customer = entry.get("customer_asid", entry.get("customer"))
    if customer is None:
        _bad(path, where, "no 'customer_asid' (rpki-client) or 'customer' (Routinator)")
    providers = entry.get("providers", entry.get("provider_asids"))
    if not isinstance(providers, list):
        _bad(path, where, "no 'providers' list")
    if "afi" in entry:
        afi = _afi(path, where, entry["afi"])
    asn = _asn(path, where, customer)
    parsed = [_provider(path, f"{where}.providers[{i}]", p) for i, p in enumerate(providers)]
    if all(limit is None for _, limit in parsed):
        return [Aspa(asn, frozenset(p for p, _ in parsed), afi)]
    # An ASPA of the old profile with providers limited to one family: one set per family.
    return [
        Aspa(asn, frozenset(p for p, limit in parsed if limit in (None, family)), family)
        for family in (4, 6)
        if afi in (None, family)
    ]


def _provider(path: Path, where: str, value: Any) -> tuple[int, int | None]:
    """A provider: 64500, "AS64500", "AS64500(v4)" (Krill's notation of an AFI limit), or
    {"asid": 64500, "afi_limit": "ipv4"} (rpki-client 8.0)."""
    if isinstance(value, dict):
        asn = value.get("asid", value.get("provider", value.get("asn")))
        limit = value.get("afi_limit", value.get("afi"))
        return _asn(path, where, asn), None if limit is None else _afi(path, where, limit)
    if isinstance(value, str) and value.endswith(")") and "(" in value:
        asn, _, limit = value[:-1].partition("(")
        return _asn(path, where, asn), _afi(path, where, limit)
    return _asn(path, where, value), None


def _asn(path: Path, where: str, value: Any) -> int:
    text = str(value).strip()
    digits = text[2:] if text[:2].upper() == "AS" else text
    if isinstance(value, bool) or not digits.isdigit() or int(digits) > ASN_MAX:
        _bad(path, where, f"{value!r} is not an AS number")
    return int(digits)


def _afi(path: Path, where: str, value: Any) -> int:
    text = str(value).strip().lower()
    if text in ("ipv4", "v4", "4", "1"):
        return 4
    if text in ("ipv6", "v6", "6", "2"):
        return 6
    _bad(path, where, f"address family {value!r} is not ipv4 or ipv6")


def _from_csv(path: Path, text: str) -> list[Aspa]:
    out: list[Aspa] = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        first = row[0].strip().upper()
        if number == 1 and not first.removeprefix("AS").isdigit():
            continue  # header
        where = f"line {number}"
        if len(row) < 2 or len(row) > 3:
            _bad(path, where, "expected 'customer,providers[,afi]', e.g. 64500,64501 64502")
        providers = row[1].replace(";", " ").split()
        if not providers:
            _bad(path, where, "no providers; write AS0 for an AS that has none")
        afi = _afi(path, where, row[2]) if len(row) == 3 and row[2].strip() else None
        out.append(
            Aspa(
                _asn(path, where, row[0]),
                frozenset(_asn(path, where, p) for p in providers),
                afi,
            )
        )
    return out


def _bad(path: Path, where: str, problem: str) -> NoReturn:
    raise InputError(f"{path}: {where}: {problem}; fix or remove the entry")
