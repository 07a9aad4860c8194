"""Per-app access policy: a small declarative language in the spirit of Pomerium's PPL.

    policy:
      allow:
        or:
          - groups: {has: sales}
          - and: [{domain: corp.example}, {method: [GET, HEAD]}]
      deny:
        - path: {prefix: /admin}
        - not: {source_ip: [198.51.100.0/24]}

A rule is a mapping with exactly one key: `and`/`or` (a list of rules), `not` (one rule), or
a criterion. A list where a rule is expected means `or`. Deny wins; nothing matched means
deny. Criteria:

    email: ADDR | [ADDR...] | {is: ADDR} | {in: [...]}     verified email, case-insensitive
    domain: DOMAIN | [...] | {is: ...} | {in: [...]}       domain of the verified email
    groups: NAME | [NAME...] | {has: N} | {any: [...]} | {all: [...]}
    claim/NAME: VALUE | [VALUE...] | {is: V} | {has: V}    an ID-token claim (list claims: member)
    authenticated: true                                    any signed-in user
    anyone: true                                           everybody, signed in or not
    method: GET | [GET, HEAD] | {is: ...} | {in: [...]}
    path: {prefix: P | [...]} | {exact: P | [...]}         the normalised path (gateway.paths)
    source_ip: CIDR | [CIDR...] | {in: [...]}              the client address (gateway.forwarded)
    client_certificate: {fingerprint: SHA256 | [...], subject: DN | [...]}

Safer defaults than the anchors: an email that is unverified or not exactly `local@domain`
never matches, path prefixes end at a segment boundary (`/admin` does not cover
`/administrator`) and a path that matches only when case or `;params` are ignored (as IIS
or a servlet container would) is unknown; there are no regular expressions. A criterion about the user has no
answer for an anonymous request; that "unknown" never allows, yet always triggers a deny rule,
so `not: {email: ...}` can never let an anonymous request through (Kleene logic).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from gateway.paths import BadPath, normalise
from overcast.model import parse_prefix

Truth = bool | None  # None: unknown (no verified identity to ask)


class Subject(Protocol):
    """The signed-in user, as the gateway's session knows it."""

    @property
    def email(self) -> str | None: ...
    @property
    def email_verified(self) -> bool: ...
    @property
    def groups(self) -> Sequence[str]: ...
    @property
    def claims(self) -> Mapping[str, Any]: ...


class Request(Protocol):
    """What a decision looks at; `gateway.request.RequestContext` provides it.

    `client_cert` is the verified TLS client certificate (`sha256` fingerprint in hex,
    `subject` as an RFC 4514 string) or None.
    """

    @property
    def identity(self) -> Subject | None: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def client_cert(self) -> Mapping[str, Any] | None: ...


class Decision(NamedTuple):
    allowed: bool
    reason: str  # one line, for the JSON access log


_EMAIL = re.compile(
    r"[^@\s]+@([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)"
)
_METHOD = re.compile(r"[A-Z]+")


class PolicyError(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)


def verified_email(identity: Subject) -> str | None:
    """The user's email, lower-cased, if the IdP verified it and it has exactly one '@'.

    No trimming: an address with stray whitespace is not the one the IdP verified.
    """
    email = (identity.email or "").lower()
    if identity.email_verified is not True or not _EMAIL.fullmatch(email):
        return None
    return email


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One node of the policy tree: `evaluate` says whether it holds, and why."""

    text: str

    def evaluate(self, request: Request) -> tuple[Truth, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class Criterion(Rule):
    test: Callable[[Request], Truth]

    def evaluate(self, request: Request) -> tuple[Truth, str]:
        return self.test(request), self.text


@dataclass(frozen=True)
class Not(Rule):
    inner: Rule

    def evaluate(self, request: Request) -> tuple[Truth, str]:
        value, why = self.inner.evaluate(request)
        return (None if value is None else not value), f"not ({why})"


@dataclass(frozen=True)
class AllOf(Rule):
    rules: tuple[Rule, ...]

    def evaluate(self, request: Request) -> tuple[Truth, str]:
        results = [r.evaluate(request) for r in self.rules]
        for value, why in results:
            if value is False:
                return False, why
        unknown = [why for value, why in results if value is None]
        if unknown:
            return None, " and ".join(unknown)
        return True, " and ".join(why for _, why in results)


@dataclass(frozen=True)
class AnyOf(Rule):
    rules: tuple[Rule, ...]

    def evaluate(self, request: Request) -> tuple[Truth, str]:
        results = [r.evaluate(request) for r in self.rules]
        for value, why in results:
            if value is True:
                return True, why
        unknown = [why for value, why in results if value is None]
        if unknown:
            return None, " or ".join(unknown)
        return False, " or ".join(why for _, why in results)


# --- criterion parsers ---------------------------------------------------------------------


def _strings(where: str, value: Any, ops: Sequence[str], hint: str) -> tuple[str, list[str]]:
    """Read `X`, `[X, ...]` or `{op: X | [...]}` into (op, values); op None for bare forms."""
    op = ops[0]
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in ops:
            raise PolicyError(where, f"use one of {', '.join(ops)} (e.g. {hint})")
        op, value = next(iter(value.items()))
        where = f"{where}.{op}"
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str | int | float | bool) for i in items):
        raise PolicyError(where, f"expected a value or a non-empty list of values (e.g. {hint})")
    return op, [str(i).strip() for i in items]


def _identity(test: Callable[[Subject], Truth]) -> Callable[[Request], Truth]:
    def check(request: Request) -> Truth:
        return None if request.identity is None else test(request.identity)

    return check


def _email(where: str, value: Any) -> Rule:
    _, items = _strings(where, value, ("is", "in"), "email: alice@corp.example")
    wanted = frozenset(i.lower() for i in items)
    for item in wanted:
        if not _EMAIL.fullmatch(item):
            raise PolicyError(where, f"{item!r} is not an email address like alice@corp.example")

    def test(identity: Subject) -> Truth:
        email = verified_email(identity)
        return None if email is None else email in wanted

    return Criterion(f"email in {sorted(wanted)}", _identity(test))


def _domain(where: str, value: Any) -> Rule:
    _, items = _strings(where, value, ("is", "in"), "domain: corp.example")
    wanted = frozenset(i.lower() for i in items)
    for item in wanted:
        if not _EMAIL.fullmatch(f"x@{item}"):
            raise PolicyError(where, f"{item!r} is not a domain like corp.example (no '@')")

    def test(identity: Subject) -> Truth:
        email = verified_email(identity)
        return None if email is None else email.rsplit("@", 1)[1] in wanted

    return Criterion(f"domain in {sorted(wanted)}", _identity(test))


def _groups(where: str, value: Any) -> Rule:
    op, items = _strings(where, value, ("has", "any", "all"), "groups: {has: sales}")
    wanted = frozenset(items)
    if op == "all":
        return Criterion(
            f"groups include all of {sorted(wanted)}",
            _identity(lambda i: wanted <= set(i.groups)),
        )
    return Criterion(
        f"groups include any of {sorted(wanted)}",
        _identity(lambda i: bool(wanted & set(i.groups))),
    )


def _claim(where: str, name: str, value: Any) -> Rule:
    if not name:
        raise PolicyError(where, "name the claim, e.g. claim/department: sales")
    _, items = _strings(where, value, ("is", "has"), f"claim/{name}: sales")
    wanted = frozenset(items)

    def test(identity: Subject) -> Truth:
        claim = identity.claims.get(name)
        values = claim if isinstance(claim, list) else [claim]
        return any(isinstance(v, str | int | float | bool) and str(v) in wanted for v in values)

    return Criterion(f"claim {name} in {sorted(wanted)}", _identity(test))


def _flag(where: str, value: Any, name: str) -> None:
    if value is not True:
        raise PolicyError(where, f"write `{name}: true`; to exclude, wrap it in `not:`")


def _authenticated(where: str, value: Any) -> Rule:
    _flag(where, value, "authenticated")
    return Criterion("authenticated", lambda r: r.identity is not None)


def _anyone(where: str, value: Any) -> Rule:
    _flag(where, value, "anyone")
    return Criterion("anyone", lambda r: True)


def _method(where: str, value: Any) -> Rule:
    _, items = _strings(where, value, ("is", "in"), "method: [GET, HEAD]")
    wanted = frozenset(i.upper() for i in items)
    for item in wanted:
        if not _METHOD.fullmatch(item):
            raise PolicyError(where, f"{item!r} is not an HTTP method like GET")
    return Criterion(f"method in {sorted(wanted)}", lambda r: r.method.upper() in wanted)


def _path(where: str, value: Any) -> Rule:
    if not isinstance(value, Mapping):
        raise PolicyError(where, "say how to match: path: {prefix: /admin} or {exact: /ping}")
    op, items = _strings(where, value, ("prefix", "exact"), "path: {prefix: /admin}")
    paths = []
    for item in items:
        try:
            canonical = normalise(item)
        except BadPath as e:
            raise PolicyError(where, f"{e}; write the path as a client would send it") from None
        paths.append((canonical.rstrip("/") or "/") if op == "prefix" else canonical)
    wanted = tuple(paths)
    folded = tuple(_fold_path(p) for p in wanted)

    def test(request: Request) -> Truth:
        if any(_covers(op, p, request.path) for p in wanted):
            return True
        # Some upstreams ignore case or ';params' (IIS, servlet containers): a path that only
        # matches that way is "unknown", so a deny rule still denies and an allow never allows.
        folded_path = _fold_path(request.path)
        return None if any(_covers(op, p, folded_path) for p in folded) else False

    verb = "is one of" if op == "exact" else "under"
    return Criterion(f"path {verb} {list(wanted)}", test)


def _covers(op: str, wanted: str, path: str) -> bool:
    if op == "exact":
        return path == wanted
    # Whole segments only: '/admin' covers '/admin' and '/admin/x', not '/administrator'.
    return wanted == "/" or path == wanted or path.startswith(wanted + "/")


def _fold_path(path: str) -> str:
    return "/".join(seg.split(";", 1)[0] for seg in path.lower().split("/"))


def _source_ip(where: str, value: Any) -> Rule:
    _, items = _strings(where, value, ("in",), "source_ip: [198.51.100.0/24]")
    try:
        nets = tuple(parse_prefix(i) for i in items)
    except ValueError as exc:
        raise PolicyError(where, str(exc)) from None

    def test(request: Request) -> bool:
        try:
            address = ipaddress.ip_address(request.client_ip)
        except ValueError:
            return False
        return any(address in net for net in nets)

    return Criterion(f"source_ip in {[str(n) for n in nets]}", test)


def _fingerprint(text: str) -> str:
    return text.replace(":", "").strip().lower()


def _client_certificate(where: str, value: Any) -> Rule:
    hint = "client_certificate: {fingerprint: <sha256 hex>}"
    if not isinstance(value, Mapping) or not value or set(value) - {"fingerprint", "subject"}:
        raise PolicyError(where, f"give fingerprint and/or subject (e.g. {hint})")
    fingerprints: frozenset[str] | None = None
    subjects: frozenset[str] | None = None
    if "fingerprint" in value:
        _, items = _strings(f"{where}.fingerprint", value["fingerprint"], ("in",), hint)
        fingerprints = frozenset(_fingerprint(i) for i in items)
        for f in fingerprints:
            if not re.fullmatch(r"[0-9a-f]{64}", f):
                raise PolicyError(where, f"{f!r} is not a SHA-256 fingerprint (64 hex digits)")
    if "subject" in value:
        _, items = _strings(f"{where}.subject", value["subject"], ("in",), hint)
        subjects = frozenset(items)

    def test(request: Request) -> bool:
        cert = request.client_cert
        if cert is None:
            return False
        fp, subject = str(cert.get("sha256", "")), cert.get("subject")
        if fingerprints is not None and _fingerprint(fp) not in fingerprints:
            return False
        return subjects is None or subject in subjects

    return Criterion("client_certificate matches", test)


_CRITERIA: dict[str, Callable[[str, Any], Rule]] = {
    "email": _email,
    "domain": _domain,
    "groups": _groups,
    "authenticated": _authenticated,
    "anyone": _anyone,
    "method": _method,
    "path": _path,
    "source_ip": _source_ip,
    "client_certificate": _client_certificate,
}
_KEYS = ", ".join([*_CRITERIA, "claim/NAME", "and", "or", "not"])


def parse_rule(data: Any, where: str) -> Rule:
    if isinstance(data, list):
        return _combine(where, data, AnyOf, "or")
    if not isinstance(data, Mapping) or len(data) != 1:
        raise PolicyError(
            where,
            "a rule is a mapping with exactly one key; combine several with "
            "`and: [...]` or `or: [...]`",
        )
    key, value = next(iter(data.items()))
    at = f"{where}.{key}"
    if key == "and":
        return _combine(at, value, AllOf, "and")
    if key == "or":
        return _combine(at, value, AnyOf, "or")
    if key == "not":
        inner = parse_rule(value, at)
        return Not(f"not ({inner.text})", inner)
    if isinstance(key, str) and key.startswith("claim/"):
        return _claim(at, key.removeprefix("claim/"), value)
    if key not in _CRITERIA:
        raise PolicyError(at, f"unknown criterion {key!r}; use one of {_KEYS}")
    return _CRITERIA[key](at, value)


def _combine(where: str, value: Any, kind: type[AllOf | AnyOf], word: str) -> Rule:
    if not isinstance(value, list) or not value:
        raise PolicyError(where, f"`{word}` takes a non-empty list of rules")
    rules = tuple(parse_rule(item, f"{where}[{i}]") for i, item in enumerate(value))
    return kind(f" {word} ".join(f"({r.text})" for r in rules), rules)


# --- policy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    allow: Rule | None  # None: nobody may reach the app
    deny: Rule | None
    source: Mapping[str, Any]  # the YAML form, for `config show` and logs

    @classmethod
    def parse(cls, data: Any) -> Policy:
        """Build a policy from its YAML form; raise ValueError naming the bad key and fix."""
        if isinstance(data, Policy):
            return data
        if not isinstance(data, Mapping):
            raise PolicyError("", "a policy is a mapping with `allow:` and/or `deny:`")
        unknown = sorted(str(k) for k in data if k not in ("allow", "deny"))
        if unknown:
            raise PolicyError(
                unknown[0], "unknown key; a policy has only `allow:` and `deny:` (deny wins)"
            )
        allow = parse_rule(data["allow"], "allow") if "allow" in data else None
        deny = parse_rule(data["deny"], "deny") if "deny" in data else None
        return cls(allow, deny, dict(data))

    def decide(self, request: Request) -> Decision:
        """Deny wins, an unknown deny denies, an unknown allow does not allow."""
        if self.deny is not None:
            value, why = self.deny.evaluate(request)
            if value is not False:
                prefix = "denied by deny rule" if value else "denied: deny rule cannot be ruled out"
                return Decision(False, f"{prefix}: {why}")
        if self.allow is None:
            return Decision(False, "denied: the app has no allow rule")
        value, why = self.allow.evaluate(request)
        if value is True:
            return Decision(True, f"allowed by allow rule: {why}")
        if request.identity is None:
            return Decision(False, "denied: not signed in")
        return Decision(False, f"denied: no allow rule matched: {why}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Lets config models declare `policy: Policy`; errors surface with the config path.
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda p: p.source),
        )
