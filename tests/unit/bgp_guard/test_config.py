from __future__ import annotations

import pytest

from overcast.config import InvalidConfig, loads


def problems(guard_yaml: str) -> list[str]:
    with pytest.raises(InvalidConfig) as exc:
        loads("sites: {}\nguard:\n" + guard_yaml)
    return [e.render() for e in exc.value.errors]


def test_full_section_loads() -> None:
    config = loads(
        """
sites: {}
guard:
  own_asns: {AS64500: {upstreams: [64501], downstreams: []}}
  prefixes:
    192.0.2.0/24:
      origins: [64500]
      upstreams: [64501, AS64502]
      max_length: 25
      path_rules: [{match: "65099", description: never via AS65099}]
    192.0.2.128/26: {ignore: true}
    203.0.113.0/24: {announced: false}
  min_peers: 2
  visibility_min_withdrawn: 5
  vrp_file: vrps.json
  asrel_file: as-rel.txt
"""
    )
    mon = config.guard.prefixes[next(iter(config.guard.prefixes))]
    assert mon.upstreams == (64501, 64502)
    assert config.guard.own_asns[64500].downstreams == ()


@pytest.mark.parametrize(
    ("guard_yaml", "fix"),
    [
        ("  prefixes: {192.0.2.0/24: {}}", "write 'origins: any' to watch only for more-specifics"),
        ("  prefixes: {192.0.2.0/24: {origins: anyone}}", "'any'"),
        ("  prefixes: {192.0.2.0/24: {announced: false, origins: any}}", "remove 'origins'"),
        ("  sinks: {x: {type: webhook, url: 'ftp://h/'}}", "is not an http(s) URL"),
        ("  sinks: {x: {type: email, host: h, sender: a@b, to: [c@d], username: u}}", "give both 'username' and 'password_file'"),
        ("  sinks: {x: {type: pager}}", "'jsonl', 'syslog', 'email' or 'webhook'"),
        ("  sinks: {x: {type: syslog, address: 'nohost'}}", "is not host:port"),
        ("  feeds: {silent_after: 0}", "greater than 0"),
        ("  prefixes: {192.0.2.0/24: {announced: false, origins: [1]}}", "remove 'origins'"),
        ("  prefixes: {192.0.2.0/24: {origins: [ASX]}}", "write it like 64500 or AS64500"),
        ("  prefixes: {192.0.2.0/24: {origins: [4294967296]}}", "write it like 64500"),
        ("  prefixes: {192.0.2.0/24: {origins: [1], max_length: 20}}", "use 24..32"),
        ("  prefixes: {192.0.2.0/24: {origins: [1], max_length: 33}}", "use 24..32"),
        ("  prefixes: {192.0.2.0/24: {origins: [1], path_rules: [{}]}}", "needs 'match'"),
        ("  prefixes: {192.0.2.0/24: {origins: [1], path_rules: [{match: '('}]}}", "not a valid regular expression"),
        ("  prefixes: {192.0.2.0/24: {ignore: true}}", "no monitored prefix covers this one"),
        ("  prefixes: {192.0.2.1/24: {origins: [1]}}", "write the prefix 192.0.2.0/24"),
        ("  prefixes: {192.0.2.0/24: {origin: [1]}}", "unknown key 'origin'"),
        ("  min_peers: 0", "greater than or equal to 1"),
        ("  leak_scope: everything", "'monitored' or 'all'"),
    ],
)  # fmt: skip
def test_errors_name_the_fix(guard_yaml: str, fix: str) -> None:
    found = problems(guard_yaml)
    assert any(fix in p and "guard." in p for p in found), found


def test_feeds() -> None:
    config = loads(
        """
sites: {}
guard:
  feeds:
    bgp: {local_asn: 65010, router_id: 192.0.2.10, listen: 192.0.2.10,
          neighbours: {192.0.2.1: 4200000001, 192.0.2.2: null}, connect: [192.0.2.2]}
    bmp: {listen: "::1"}
"""
    )
    bgp = config.guard.feeds.bgp
    assert bgp is not None and len(bgp.neighbours) == 2 and bgp.port == 179
    assert config.guard.feeds.bmp is not None and config.guard.feeds.bmp.port == 11019


@pytest.mark.parametrize(
    ("bgp", "fix"),
    [
        ("{local_asn: 1, router_id: 192.0.2.1, neighbours: {192.0.2.2: 2}}", "set 'listen'"),
        ("{local_asn: 1, router_id: 192.0.2.1, neighbours: {192.0.2.2: 2}, connect: [192.0.2.3]}",
         "add them to 'neighbours'"),
        ("{local_asn: 1, router_id: '2001:db8::1', listen: 192.0.2.1, neighbours: {192.0.2.2: 2}}",
         "router_id is an IPv4 address"),
        ("{local_asn: 1, router_id: 192.0.2.1, listen: 192.0.2.1, neighbours: {}}",
         "at least 1 item"),
        ("{local_asn: 1, router_id: 192.0.2.1, listen: 192.0.2.1, neighbours: {192.0.2.2: 2}, hold_time: 2}",
         "at least 3 seconds"),
    ],
)  # fmt: skip
def test_bad_feeds(bgp: str, fix: str) -> None:
    found = problems(f"  feeds:\n    bgp: {bgp}\n")
    assert any(fix in p and "guard.feeds.bgp" in p for p in found), found


def test_neighbour_with_a_password_file() -> None:
    config = loads(
        """
sites: {}
guard:
  feeds:
    bgp:
      local_asn: 65010
      router_id: 192.0.2.10
      listen: 192.0.2.10
      neighbours:
        192.0.2.1: 64500
        192.0.2.2: {asn: 64501, password_file: secrets/bgp-192.0.2.2.password}
        2001:db8::1: {password_file: bgp-v6.password}
"""
    )
    bgp = config.guard.feeds.bgp
    assert bgp is not None
    by_address = {str(a): (n.asn, n.password_file) for a, n in bgp.neighbours.items()}
    assert by_address == {
        "192.0.2.1": (64500, None),
        "192.0.2.2": (64501, "secrets/bgp-192.0.2.2.password"),
        "2001:db8::1": (None, "bgp-v6.password"),
    }


@pytest.mark.parametrize(
    ("neighbour", "fix"),
    [
        ("{asn: 64500, password: hunter2}", "is not written in overcast.yaml; put it in a file"),
        ("{asn: 64500, password_file: ''}", "at least 1 character"),
        ("{asn: 64500, md5: x}", "unknown key 'md5'"),
        ("{asn: nope}", "'nope' is not an AS number"),
        ("nope", "'nope' is not an AS number"),
    ],
)
def test_bad_neighbours(neighbour: str, fix: str) -> None:
    bgp = f"{{local_asn: 1, router_id: 192.0.2.1, listen: 192.0.2.1, neighbours: {{192.0.2.2: {neighbour}}}}}"
    found = problems(f"  feeds:\n    bgp: {bgp}\n")
    assert any(fix in p and "guard.feeds.bgp.neighbours.192.0.2.2" in p for p in found), found
    assert not any("hunter2" in p for p in found)  # a password is never echoed
