"""Every `overcast` command's --help teaches: a description and at least one example."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from overcast.cli import build_parser


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
    import subprocess
    import sys

    code = (
        "import sys; from overcast.cli import main\n"
        "try: main(['-v', 'guard', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('lab.cli', 'controller.cli', 'bridge.cli', 'gateway.cli', "
        "'bgp_guard.cli') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "['bgp_guard.cli']"
