"""The Mininet topology's pure parts: the config it generates, link shapes, host names, and
the userspace provider network's forwarding decisions (lab.wan_emulator.Schedule)."""

from __future__ import annotations

import itertools

import pytest

from lab.mininet_net import SHAPES, LinkShape, generated_config, host_name
from lab.plan import HostPlan
from lab.wan_emulator import Schedule
from overcast.config import loads
from tests.unit.lab.test_plan import make_plan


def test_generated_config_puts_every_site_on_both_providers_and_every_segment() -> None:
    config = loads(generated_config(sites=3, segments=2, hosts=2))
    assert list(config.sites) == ["s1", "s2", "s3"]
    assert config.underlay_names() == ["isp-a", "isp-b"]
    assert all(list(config.addresses(s)) == ["isp-a", "isp-b"] for s in config.sites)
    assert {n: s.sites for n, s in config.l2_segments().items()} == {
        "seg1": ("s1", "s2", "s3"),
        "seg2": ("s1", "s2", "s3"),
    }
    assert config.lab.hosts_per_segment == 2
    assert config.bridge.failover.bfd_interval_ms == 200
    assert set(config.segments) == set(config.l2_segments())  # routed=0: no L3 segment


def test_generated_config_with_routed_segments_gives_a_routed_host_per_site() -> None:
    config = loads(generated_config(sites=3, segments=1, hosts=1, routed=2))
    assert set(config.segments) - set(config.l2_segments()) == {"routed1", "routed2"}
    plan = make_plan(config)
    assert [(host_name(h), str(h.address), str(h.gateway.ip)) for h in plan.routed_hosts] == [
        ("s1_routed1_1", "10.1.1.10/24", "10.1.1.1"),
        ("s2_routed1_1", "10.1.2.10/24", "10.1.2.1"),
        ("s3_routed1_1", "10.1.3.10/24", "10.1.3.1"),
        ("s1_routed2_1", "10.2.1.10/24", "10.2.1.1"),
        ("s2_routed2_1", "10.2.2.10/24", "10.2.2.1"),
        ("s3_routed2_1", "10.2.3.10/24", "10.2.3.1"),
    ]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"sites": 1}, "sites=1"),
        ({"segments": 0}, "segments=0"),
        ({"hosts": "x"}, "hosts='x'"),
        ({"routed": 9}, "routed=9"),
    ],
)
def test_generated_config_names_a_bad_parameter_and_the_range(
    args: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as exc:
        generated_config(**args)  # type: ignore[arg-type]
    assert "--topo overcast,sites=3" in str(exc.value)


def test_the_two_providers_differ_in_every_figure() -> None:
    a, b = SHAPES
    assert a.bw != b.bw and a.delay_ms != b.delay_ms and a.loss != b.loss


def test_link_params_with_netem_and_without() -> None:
    shape = LinkShape(bw=20, delay_ms=10, loss=0.5)
    assert shape.params(netem=True) == {"bw": 20, "delay": "10ms", "loss": 0.5}
    assert LinkShape(bw=100, delay_ms=2, loss=0).params(netem=True) == {"bw": 100, "delay": "2ms"}
    # Without netem the emulator forwards frames as read: senders fill in checksums.
    assert shape.params(netem=False) == {"bw": 20, "txo": False}
    delay, loss = shape.path()
    assert delay == 20
    assert loss == pytest.approx(0.9975)  # 1 - 0.995 ** 2, in percent


def test_host_names_are_identifiers_for_mininets_cli() -> None:
    host = HostPlan("ns", "cloud-a", "finance", 1, "finance-1", "02:00:00:00:00:01", None, 1370)  # type: ignore[arg-type]
    assert host_name(host) == "cloud_a_finance_1"


# -- the userspace provider network ------------------------------------------------------

A, B, C = (bytes([2, 0, 0, 0, 0, n]) for n in (1, 2, 3))
BROADCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, tag: int = 0) -> bytes:
    return dst + src + b"\x08\x00" + bytes([tag])


def test_frames_wait_the_delay_and_leave_in_order() -> None:
    s = Schedule([0, 1, 2], delay_s=0.010, loss=0)
    s.receive(0, frame(BROADCAST, A, 1), now=1.000)
    s.receive(0, frame(BROADCAST, A, 2), now=1.000)
    assert list(s.due(1.009)) == []
    out = list(s.due(1.010))
    # Flooded to every other port, each port's frames in the order they came.
    assert [(p, f[-1]) for p, f in out] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert s.next_due() is None


def test_learned_destinations_get_one_port_and_unknown_ones_are_flooded() -> None:
    s = Schedule([0, 1, 2], delay_s=0, loss=0)
    s.receive(1, frame(A, B), now=0)  # unknown A: flooded; B learned on port 1
    assert sorted(p for p, _ in s.due(0)) == [0, 2]
    s.receive(0, frame(B, A), now=1)
    assert [p for p, _ in s.due(1)] == [1]
    s.receive(1, frame(B, C), now=2)  # B is on the port it came from: not sent back
    assert list(s.due(2)) == []
    # A MAC not heard from for longer than the ageing time is unknown again.
    s.receive(1, frame(A, B), now=400)
    assert sorted(p for p, _ in s.due(400)) == [0, 2]


def test_loss_drops_the_given_share() -> None:
    draws = itertools.cycle([i / 1000 for i in range(1000)])
    s = Schedule([0, 1], delay_s=0, loss=0.25, random=lambda: next(draws))
    for _ in range(1000):
        s.receive(0, frame(BROADCAST, A), now=0)
    assert len(list(s.due(0))) == 750


def test_runts_are_ignored() -> None:
    s = Schedule([0, 1], delay_s=0, loss=0)
    s.receive(0, b"\x00" * 13, now=0)
    assert list(s.due(0)) == []
