"""Every `overcast` command's --help teaches: a description and at least one example."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from overcast.cli import build_parser
from tests.fresh import run_overcast


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


COMMANDS = dict(commands(build_parser()))


def test_every_part_is_there() -> None:
    assert {path[0] for path in COMMANDS if path} == {
        "validate",
        "lab",
        "controller",
        "bridge",
        "guard",
        "gateway",
        "attest",
    }


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "overcast")
def test_help_has_a_description_and_an_example(path: tuple[str, ...]) -> None:
    text = COMMANDS[path].format_help()
    assert COMMANDS[path].description, f"overcast {' '.join(path)} --help has no description"
    # The top level points at the first command to run instead of listing examples.
    examples = [line for line in text.splitlines() if line.strip().startswith("overcast ")]
    assert examples or "Start with: overcast" in text, f"overcast {' '.join(path)}: no example"


def test_a_part_command_loads_only_that_part() -> None:
    """`overcast guard ...` starts without importing the other parts' commands (start-up
    time is most of a short replay)."""
    parts = ("lab.cli", "controller.cli", "bridge.cli", "gateway.cli", "bgp_guard.cli")
    assert run_overcast("-v", "guard", "--help").imported(*parts) == ["bgp_guard.cli"]
