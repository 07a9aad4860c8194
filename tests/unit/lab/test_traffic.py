import json
from pathlib import Path

import pytest

from bridge.keys import generate_private_key, public_key_of
from lab import demo, demo_steps
from lab.flows import SwitchState
from lab.netns import LabCommandError
from lab.plan import plan_lab
from lab.traffic import parse_iperf3, parse_ping
from overcast.config import load

PING_OK = """PING 198.19.0.9 (198.19.0.9) 56(84) bytes of data.
64 bytes from 198.19.0.9: icmp_seq=1 ttl=64 time=1.20 ms

--- 198.19.0.9 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 803ms
rtt min/avg/max/mdev = 0.912/1.183/1.502/0.201 ms
"""


def test_ping_summary_is_parsed() -> None:
    result = parse_ping(PING_OK, "hq/fin-1", "branch/fin-1", 5)
    assert (result.sent, result.received, result.rtt_avg_ms, result.ok) == (5, 5, 1.183, True)
    assert str(result) == "ping hq/fin-1 -> branch/fin-1: 5/5 replies, avg 1.18 ms"


def test_ping_with_losses_or_no_output_is_not_ok() -> None:
    lossy = PING_OK.replace("5 received", "3 received")
    assert not parse_ping(lossy, "a", "b", 5).ok
    nothing = parse_ping("ping: connect: Network is unreachable\n", "a", "b", 5)
    assert (nothing.sent, nothing.received, nothing.rtt_avg_ms, nothing.ok) == (5, 0, None, False)


def test_iperf3_json_gives_the_receivers_rate() -> None:
    out = json.dumps(
        {
            "end": {
                "sum_sent": {"bits_per_second": 2.5e8, "retransmits": 12},
                "sum_received": {"bits_per_second": 2.4e8},
            }
        }
    )
    result = parse_iperf3(out, "a", "b")
    assert (result.bits_per_second, result.retransmits) == (2.4e8, 12)
    assert str(result) == "iperf3 TCP a -> b: 240 Mbit/s (12 retransmits)"


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        (
            json.dumps({"error": "unable to connect to server: Connection refused"}),
            "Connection refused",
        ),
        ("", "no output"),
        ("iperf3: error - bad", "iperf3: error - bad"),
    ],
)
def test_failed_iperf3_names_its_error(out: str, reason: str) -> None:
    with pytest.raises(LabCommandError, match=f"iperf3 a -> b failed: .*{reason}"):
        parse_iperf3(out, "a", "b")


def test_demo_checks_every_cross_site_pair() -> None:
    config, _ = demo.built_in()
    assert config == load(Path(demo.__file__).with_name(demo.BUILT_IN))
    keys = {site: public_key_of(generate_private_key()) for site in config.sites}
    pairs = demo_steps.cross_site_pairs(plan_lab(config, "oc1234", keys))
    assert [(a.site, b.site) for a, b in pairs] == [
        ("hq", "branch"),
        ("hq", "cloud-a"),
        ("hq", "cloud-b"),
        ("branch", "cloud-a"),
        ("branch", "cloud-b"),
        ("cloud-a", "cloud-b"),
    ]
    roles = {config.sites[s].role for s in config.sites}
    assert roles == {"enterprise", "provider"}
    # Two enterprise sites, two cloud vendors, two carriers.
    assert {config.sites[s].provider for s in config.sites} == {None, "vendor-a", "vendor-b"}
    assert len(config.underlays) == 2


def test_a_switch_is_programmed_only_when_connected_complete_and_matching() -> None:
    assert SwitchState("hq", True, 14, 14, ()).programmed
    assert not SwitchState("hq", False, 14, 14, ()).programmed
    assert not SwitchState("hq", True, 13, 14, ()).programmed
    assert not SwitchState("hq", True, 14, 14, ("vx100-1",)).programmed
