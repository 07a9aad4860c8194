"""Read a BGPalerter `prefixes.yml` as is, into our `guard:` section.

BGPalerter's fields map one to one: `asn` -> origins, `ignoreMorespecifics` ->
ignore_more_specifics, `ignore`, `description`, `path` (`match`, `notMatch` -> miss,
`matchDescription`, `minLength`/`maxLength` of the AS path) -> path_rules, and
`options.monitorASns.<asn>.upstreams/downstreams` -> own_asns. Fields we have no use for
(`group`, `includeMonitors`, `excludeMonitors`) are reported as notes, not dropped silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import yaml

from bgp_guard.config import GuardConfig
from bgp_guard.errors import InputError
from overcast.yamlsrc import parse

_PATH_FIELDS = {
    "match": "match",
    "notMatch": "miss",
    "matchDescription": "description",
    "minLength": "min_path_length",
    "maxLength": "max_path_length",
}
_UNUSED = ("group", "includeMonitors", "excludeMonitors")


def convert(doc: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """A parsed prefixes.yml -> (our guard section as plain data, notes for the user)."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a mapping of prefixes at the top level")
    ours = sorted({"sites", "guard"} & set(doc))
    if ours:
        raise InputError(
            f"{source} looks like an overcast.yaml (it has {' and '.join(k + ':' for k in ours)}), not a "
            "BGPalerter prefixes.yml; give the prefixes.yml from BGPalerter's config"
        )
    notes: list[str] = []
    prefixes: dict[str, Any] = {}
    for prefix, entry in doc.items():
        if prefix == "options":
            continue
        if not isinstance(entry, dict):
            raise InputError(f"{source}: {prefix}: expected a mapping with 'asn' and friends")
        out: dict[str, Any] = {}
        asn = entry.get("asn")
        if asn is not None:
            out["origins"] = asn if isinstance(asn, list) else [asn]
        if entry.get("description"):
            out["description"] = str(entry["description"])
        if entry.get("ignoreMorespecifics"):
            out["ignore_more_specifics"] = True
        if entry.get("ignore"):
            out["ignore"] = True
        rules = entry.get("path") or []
        rules = rules if isinstance(rules, list) else [rules]
        if rules:
            out["path_rules"] = [
                {ours: rule[theirs] for theirs, ours in _PATH_FIELDS.items() if theirs in rule}
                if isinstance(rule, dict)
                else rule
                for rule in rules
            ]
        for field in _UNUSED:
            if field in entry:
                notes.append(f"{prefix}: '{field}' has no equivalent here and was left out")
        prefixes[str(prefix)] = out
    section: dict[str, Any] = {"prefixes": prefixes}
    options = doc.get("options") or {}
    monitor = options.get("monitorASns") if isinstance(options, dict) else None
    if isinstance(monitor, dict):
        section["own_asns"] = {
            int(asn): {k: v for k, v in (spec or {}).items() if k in ("upstreams", "downstreams")}
            for asn, spec in monitor.items()
        }
    return section, notes


def load(path: str | Path) -> tuple[GuardConfig, list[str]]:
    """Read and validate a prefixes.yml; errors name the file, the entry and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read BGPalerter prefixes file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; give a BGPalerter prefixes.yml") from None
    # Our YAML reader, not yaml.safe_load: a prefix listed twice must be reported, not
    # silently replaced by its second entry.
    parsed = parse(text)
    if parsed.errors:
        raise InputError("; ".join(e.render(str(path)) for e in parsed.errors))
    doc = parsed.data
    section, notes = convert(doc, str(path))
    try:
        config = GuardConfig.model_validate(section)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"{path}: {problems}") from None
    errors = config.problems()
    if errors:
        raise InputError(f"{path}: " + "; ".join(e.render() for e in errors))
    return config, notes


def to_yaml(config: GuardConfig) -> str:
    """Our `guard:` section for overcast.yaml, with defaults left out."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump({"guard": data}, sort_keys=False, default_flow_style=None)


def merge(base: GuardConfig, imported: GuardConfig, source: str) -> GuardConfig:
    """`base` plus the prefixes and ASNs of `imported`; a prefix in both is an error."""
    both = sorted(str(p) for p in set(base.prefixes) & set(imported.prefixes))
    if both:
        raise InputError(f"{', '.join(both)} is both in guard.prefixes and in {source}; keep one")
    return base.model_copy(
        update={
            "prefixes": {**base.prefixes, **imported.prefixes},
            "own_asns": {**imported.own_asns, **base.own_asns},
        }
    )
