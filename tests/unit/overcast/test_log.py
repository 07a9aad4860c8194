"""Log lines: a command that runs until stopped stamps each with ISO 8601 UTC time; the
one-shot commands keep short lines."""

from __future__ import annotations

import logging
import re

import pytest

from overcast import log
from overcast.cli import build_parser

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO bridge\.watch: failover$")


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_daemons_stamp_their_lines_and_one_shot_commands_do_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log.setup(1, timestamps=True)
    logging.getLogger("bridge.watch").info("failover")
    log.setup(1)
    logging.getLogger("bridge.watch").info("failover")
    stamped, plain = capsys.readouterr().err.splitlines()
    assert STAMPED.match(stamped), stamped
    assert plain == "INFO bridge.watch: failover"


@pytest.mark.parametrize(
    ("argv", "long_running"),
    [
        (["bridge", "watch", "c.yaml", "--site", "hq", "--keys", "k", "--ovsdb", "unix:x"], True),
        (["controller", "run", "--config", "c.yaml"], True),
        (["validate", "c.yaml"], False),
    ],
)
def test_which_commands_run_until_stopped(argv: list[str], long_running: bool) -> None:
    args = build_parser(argv).parse_args(argv)
    assert getattr(args, "long_running", False) is long_running
