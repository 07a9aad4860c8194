from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_binaries
from tests.integration.controller.netns import Namespaces, OvsSwitch, unique_prefix


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    spaces = Namespaces()
    try:
        yield spaces
    finally:
        spaces.close()


@pytest.fixture
def switch(namespaces: Namespaces, prefix: str) -> Iterator[OvsSwitch]:
    """A userspace OVS (ovsdb-server + ovs-vswitchd) alone in a fresh namespace."""
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-ofctl")
    sw = OvsSwitch(namespaces.add(f"{prefix}-sw"))
    try:
        yield sw
    finally:
        sw.close()
