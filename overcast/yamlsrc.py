"""YAML loading that keeps line numbers and refuses duplicate keys.

PyYAML keeps the last of two equal keys without a word; for a network config that is
silent data loss, so we report it. Every mapping key and sequence item keeps its line and
column so a validation error can point at the exact place in the file.

libyaml (PyYAML's C extension) tokenises and parses, seven times faster than PyYAML's own
Python parser on a config with a few hundred prefixes; PyYAML's Python composer builds the
nodes from its events, because libyaml's composer recurses in C and a deeply nested file
would crash the interpreter instead of raising RecursionError. A file libyaml refuses is
parsed again by PyYAML alone, whose error message is the one we report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer

from overcast.model import ConfigError

Path = tuple[str | int, ...]

# A config is a few hundred values a few levels deep. Far beyond that is a mistake or an
# attack: YAML aliases that repeat aliases expand exponentially ("billion laughs"), and deep
# nesting exhausts the interpreter's stack.
MAX_VALUES = 100_000
MAX_DEPTH = 64


if yaml.__with_libyaml__:

    class _Loader(Composer, yaml.CSafeLoader):
        """libyaml's events, composed into nodes in Python (see above)."""

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            Composer.__init__(self)

else:  # a PyYAML built without libyaml: its own parser for everything
    _Loader = yaml.SafeLoader  # type: ignore[misc,assignment]


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)  # raises, with PyYAML's message


class _TooLarge(Exception):
    """The document exceeds MAX_VALUES or MAX_DEPTH; the message says which and the fix."""


@dataclass
class Document:
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    values: int = 0

    def position(self, path: Path) -> tuple[int | None, int | None]:
        """Line and column of `path`, or of its nearest ancestor found in the file."""
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return None, None


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def parse(text: str) -> Document:
    """Parse YAML text; syntax errors come back as ConfigErrors with line and column."""
    doc = Document(data=None)
    try:
        node = _compose(text)
    except RecursionError:
        doc.errors.append(ConfigError("", _too_deep()))
        return doc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # The problem alone: str(exc) repeats the text around it over several lines.
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        doc.errors.append(
            ConfigError(
                "", f"YAML syntax error: {problem}; fix the indentation or quoting", line, col
            )
        )
        return doc
    if node is None:
        return doc
    try:
        doc.data = _build(node, (), doc, yaml.SafeLoader(_EMPTY))
    except _TooLarge as exc:
        doc.data = None
        doc.errors.append(ConfigError("", str(exc)))
    return doc


def _too_deep() -> str:
    return f"the YAML is nested more than {MAX_DEPTH} levels deep; a config never needs that"


def _build(node: yaml.Node, path: Path, doc: Document, scalars: yaml.SafeLoader) -> Any:
    doc.values += 1
    if doc.values > MAX_VALUES:
        raise _TooLarge(
            f"the YAML expands to more than {MAX_VALUES} values (aliases that repeat "
            "aliases?); write the config out without nesting '*' aliases"
        )
    if len(path) > MAX_DEPTH:
        raise _TooLarge(_too_deep())
    doc.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = scalars.construct_object(key_node, deep=True)
            here = (*path, key)
            if key in out:
                line, _ = doc.marks[here]
                doc.errors.append(
                    ConfigError(
                        dotted(here),
                        f"duplicate key (first defined on line {line}); "
                        "merge the two entries or rename one",
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                    )
                )
                continue
            doc.marks[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, here, doc, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, scalars) for i, item in enumerate(node.value)]
    return scalars.construct_object(node, deep=True)


_EMPTY = ""
