import json

import pytest

from lab import scenarios
from lab.scenarios import Check, Result, Scenario, rotate, stretch
from overcast.cli import main
from tests.unit.lab.test_plan import make_plan


def test_only_built_scenarios_are_registered_and_their_labs_load() -> None:
    known = scenarios.registry()
    assert {"stretch", "rotate", "sso", "hijack", "leak"} <= set(known)
    for scenario in known.values():
        if isinstance(scenario, Scenario):
            scenario.config()
    config, _ = stretch.SCENARIO.config()
    assert set(config.l2_segments()) == {"finance", "guest"}
    assert set(config.segments) == {"finance", "guest", "apps"}
    # Its routed segment gets a routed host at each site, IPv4 and IPv6.
    routed = make_plan(config).routed_hosts
    assert [(h.site, h.segment, len(h.addresses)) for h in routed] == [
        ("hq", "apps", 2),
        ("branch", "apps", 2),
    ]


def test_rotate_runs_each_site_from_its_own_key_directory() -> None:
    config, _ = rotate.SCENARIO.config()
    plan = make_plan(config, "oc1234")
    where = rotate.deployed(plan)
    assert set(where) == {"hq", "branch", "cloud-a"}
    hq = plan.site("hq")
    assert where["hq"].netns == hq.netns == "oc1234-hq"
    assert where["hq"].keys == hq.dir / "keys" and where["hq"].run_dir == hq.dir / "wireguard"
    # The probe stream's two ends share the segment the key rotation must not interrupt.
    assert plan.hosts_at("hq")[0].segment == plan.hosts_at("branch")[0].segment


def test_a_result_passes_only_with_checks_all_passing_and_no_error() -> None:
    good = Check("ping a -> b", True, "5/5 replies", {"received": 5})
    bad = Check("isolation a -x- c", False, "5/5 replies")
    assert Result("stretch", "oc1234", (good,)).ok
    assert not Result("stretch", "oc1234", (good, bad)).ok
    assert not Result("stretch", "oc1234", ()).ok
    failed = Result("stretch", "oc1234", (good,), error="site hq: ovs-vswitchd did not start")
    assert not failed.ok
    text = failed.summary()
    assert "pass  ping a -> b: 5/5 replies" in text and "error: site hq" in text
    assert text.endswith("result: FAIL (1/1 checks)")
    assert Result("stretch", "oc1234", (good, bad)).as_dict()["checks"][1]["ok"] is False


def test_list_says_what_each_scenario_proves(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "scenario", "--list", "--json"]) == 0
    listed = {s["name"]: s["promise"] for s in json.loads(capsys.readouterr().out)["scenarios"]}
    assert "segments" in listed["stretch"] and "rotates" in listed["rotate"]
    assert "signs in" in listed["sso"]
    assert "hijack alert" in listed["hijack"]
    assert "leaker" in listed["leak"]
    assert main(["lab", "scenario", "--list"]) == 0
    assert capsys.readouterr().out.startswith("stretch ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rotate-all"], "no scenario 'rotate-all'; there are: stretch, rotate, sso, hijack, leak"),
        (["stretch", "--list"], "not both"),
        ([], "name a scenario"),
        (["stretch", "--id", "BAD"], "'BAD' is not a lab id"),
    ],
)
def test_bad_scenario_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "scenario", *argv]) == 2
    assert message in capsys.readouterr().err


def test_failover_picks_a_pair_on_two_shared_networks_in_any_lab() -> None:
    from lab import demo
    from lab.netns import LabCommandError
    from lab.scenarios import failover

    for config in (failover.SCENARIO.config()[0], demo.built_in()[0]):
        pair = failover.pick_pair(config, make_plan(config, "oc1234"))
        assert (pair.source.site, pair.target.site) == ("hq", "branch")
        assert (pair.preferred, pair.backup) == ("isp-a", "isp-b")
    single, _ = stretch.SCENARIO.config()  # one underlay: no failover to show
    with pytest.raises(LabCommandError, match="share two underlay networks"):
        failover.pick_pair(single, make_plan(single, "oc1234"))
