"""Reading overcast.yaml: the file itself, its YAML, and schema errors located in it.

`overcast.config` validates the whole file against every part's schema. A command that
needs one part's section only (`overcast guard replay` reads `guard:`) uses `load_section`,
which validates that section alone: it starts without importing or building the other
parts' schemas. The rest of the file is left to `overcast validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from overcast.model import ConfigError
from overcast.yamlsrc import Document, dotted, parse

# A config is a few kB; reading stops past this, so `overcast validate /dev/zero` (or a
# multi-GB file given by mistake) ends with an error instead of filling memory.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

Section = TypeVar("Section", bound=pydantic.BaseModel)
Valid = TypeVar("Valid")


class InvalidConfig(Exception):
    """The config has one or more problems; `errors` lists all of them."""

    def __init__(self, source: str, errors: list[ConfigError]) -> None:
        self.source = source
        self.errors = sorted(set(errors), key=lambda e: (e.line or 0, e.column or 0, e.path))
        super().__init__("\n".join(e.render(source) for e in self.errors))


def read(path: str | Path) -> str:
    """The text of the config file at `path`, or InvalidConfig saying why it cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise InvalidConfig(
                str(path),
                [ConfigError("", f"larger than {MAX_CONFIG_BYTES >> 20} MiB; is it the config?")],
            )
        return raw.decode("utf-8")
    except OSError as exc:
        raise InvalidConfig(
            str(path), [ConfigError("", f"cannot read file: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError:
        raise InvalidConfig(
            str(path), [ConfigError("", "file is not UTF-8 text; save it as UTF-8")]
        ) from None


def mapping(text: str, source: str, wanted: str) -> tuple[Document, dict[str, Any]]:
    """The YAML of a config file, which must be a mapping (`wanted` names its key)."""
    doc = parse(text)
    if doc.errors and doc.data is None:
        raise InvalidConfig(source, doc.errors)
    if not isinstance(doc.data, dict):
        raise InvalidConfig(
            source,
            [
                *doc.errors,
                ConfigError("", f"the file must be a mapping with a '{wanted}:' key at the top"),
            ],
        )
    return doc, dict(doc.data)


def load_section(
    path: str | Path,
    name: str,
    model: type[Section],
    problems: Callable[[Section], list[ConfigError]] = lambda _: [],
) -> Section:
    """The `name:` section of the config at `path`, validated by `model` alone (absent: the
    model's defaults), then by `problems` (cross-checks within the section, paths from the
    file root). Raises InvalidConfig with every problem, each located in the file: the same
    ones `overcast validate` finds in that section."""
    source = str(path)
    doc, data = mapping(read(path), source, name)
    section, errors, removed = validate_entries(
        {name: data.get(name, {})}, doc, lambda d: model.model_validate(d.get(name, {})), (name,)
    )
    return cross_checked(source, doc, section, errors, removed, problems)


def cross_checked(
    source: str,
    doc: Document,
    value: Valid | None,
    errors: list[ConfigError],
    removed: set[str],
    problems: Callable[[Valid], list[ConfigError]],
) -> Valid:
    """`value` (what validate_entries made) once `problems` finds nothing either; else
    InvalidConfig with every error. A cross-check error about an entry validation already
    removed is left out: it would only repeat that entry's own error."""
    if value is not None:
        errors = errors + [
            locate(e, doc)
            for e in problems(value)
            if not any(f"'{entry}'" in e.message for entry in removed)
        ]
    if errors:
        raise InvalidConfig(source, errors)
    assert value is not None
    return value


def validate_entries(
    data: dict[str, Any],
    doc: Document,
    validate: Callable[[dict[str, Any]], Valid],
    within: tuple[str, ...] = (),
) -> tuple[Valid | None, list[ConfigError], set[str]]:
    """`validate(data)`, with schema errors for every entry: the entries pydantic refuses are
    dropped and the rest validated again, so that what is left can be cross-checked and one
    run shows every problem instead of one layer at a time. Returns the valid config (None if
    nothing valid was left), the errors (those of `doc` first), and the names of the entries
    dropped. `within` is where in `data` the validated part lies (the errors' paths start
    there)."""
    errors = list(doc.errors)
    removed: set[str] = set()
    # Each round removes at least one entry, so this ends.
    while True:
        try:
            return validate(data), errors, removed
        except pydantic.ValidationError as exc:
            # A key reported in an earlier round (wrong type) and removed is not "missing" too.
            reported = {e.path for e in errors}
            errors += [
                e
                for e in (schema_error(e, doc, within) for e in exc.errors())
                if e.path not in reported
            ]
            pruned = data
            for err in exc.errors():
                pruned, name = _without(pruned, within + tuple(err["loc"]))
                removed.add(name)
            if pruned == data:
                return None, errors, removed
            data = pruned


def _without(data: dict[str, Any], loc: tuple[Any, ...]) -> tuple[dict[str, Any], str]:
    """`data` minus the entry that `loc` points into (a site, segment, ...) or its section."""
    out = dict(data)
    if len(loc) >= 2 and isinstance(out.get(loc[0]), dict) and loc[0] != "gateway":
        section = dict(out[loc[0]])
        section.pop(loc[1], None)
        out[loc[0]] = section
        return out, str(loc[1])
    out.pop(loc[0], None)
    return out, str(loc[0])


def schema_error(err: Any, doc: Document, within: tuple[str, ...] = ()) -> ConfigError:
    """One pydantic error as a ConfigError in the user's words, located in `doc`; `within`
    is the path of the section the model validated."""
    # "[key]" marks an error in a mapping key rather than its value; the key is the path.
    loc = within + tuple(p for p in err["loc"] if p != "[key]")
    # Drop the discriminator tag pydantic inserts: segments.<name>.l2.vni -> segments.<name>.vni
    if len(loc) > 2 and loc[0] == "segments" and loc[2] in ("l2", "l3"):
        loc = loc[:2] + loc[3:]
    kind = err["type"]
    if kind == "missing":
        message = "required key is missing; add it"
    elif kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}; remove it or fix its spelling"
    elif kind == "union_tag_not_found" and err["ctx"]["discriminator"] == "'mode'":
        message = "segment needs 'mode: l2' (with vni, vlan) or 'mode: l3' (with prefixes)"
    elif kind == "union_tag_not_found":
        message = f"{err['ctx']['discriminator']} is missing; add it"
    elif kind == "union_tag_invalid":
        ctx = err["ctx"]
        known = " or ".join(str(ctx["expected_tags"]).rsplit(", ", 1))
        message = f"{ctx['discriminator'].strip(chr(39))} {ctx['tag']!r} is not known; use {known}"
    elif kind in ("dict_type", "model_type"):
        message = f"must be a mapping ('name: value' entries), not {err['input']!r}"
    elif kind == "value_error":
        message = str(err["ctx"]["error"])
    else:
        message = f"{err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"
    line, col = doc.position(loc)
    return ConfigError(dotted(loc), message, line, col)


def locate(err: ConfigError, doc: Document) -> ConfigError:
    """`err` with the line and column of its path in `doc`."""
    path = tuple(int(p) if p.isdigit() else p for p in err.path.split("."))
    line, col = doc.position(path)
    return ConfigError(err.path, err.message, line, col)
