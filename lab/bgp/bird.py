"""bird2 for the lab's routers: each router's bird.conf (pure) and a few `birdc` calls.

Export policy, per session (Gao-Rexford): a route learned from a customer is tagged with
the large community (own ASN, 1, 1) (RFC 8092) and preferred (local-pref 200 over 100);
to a customer or the guard everything goes; to a provider only our own (static) routes and
the tagged ones. A leaking session (`Session.leak`, once `leaking`) exports everything
to that provider: the customer's classic mistake, RFC 7908 section 3.1.

Timers are short so that a scenario converges in seconds: connect retries every second
instead of bird's 120 s, a 9 s hold time.
"""

from __future__ import annotations

import ipaddress
import re

from lab import netns
from lab.bgp.plan import RouterPlan, Session

HELD = "held"  # the static protocol a scenario enables to announce the held prefixes
PROGRAM = "bird"


def _export(router: RouterPlan, session: Session, leaking: bool) -> str:
    if session.relationship != "provider" or (leaking and session.leak):
        return "export all;"
    return f"export where source = RTS_STATIC || ({router.asn}, 1, 1) ~ bgp_large_community;"


def _import(router: RouterPlan, session: Session) -> str:
    if session.relationship == "collector":
        return "import none;"
    if session.relationship == "customer":
        return (
            f"import filter {{ bgp_large_community.add(({router.asn}, 1, 1)); "
            "bgp_local_pref = 200; accept; };"
        )
    return "import all;"


def _static(name: str, prefixes: tuple[ipaddress.IPv4Network, ...], disabled: bool) -> str:
    routes = " ".join(f"route {p} blackhole;" for p in prefixes)
    return f"protocol static {name} {{ ipv4; {'disabled; ' if disabled else ''}{routes} }}\n"


def config(router: RouterPlan, leaking: bool = False) -> str:
    """`router`'s bird.conf; with `leaking`, its leak sessions export everything."""
    text = (
        f"# {router.label}: written by the Overcast lab\n"
        f"router id {router.address.ip};\n"
        f'log "{router.dir / "bird.log"}" all;\n'
        "protocol device {}\n"
    )
    if router.originates:
        text += _static("originated", router.originates, disabled=False)
    if router.held:
        text += _static(HELD, router.held, disabled=True)
    for s in router.sessions:
        text += f"""protocol bgp {s.name} {{
  description "{s.relationship}";
  local {router.address.ip} as {router.asn};
  neighbor {s.address} as {s.asn};
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ {_import(router, s)} {_export(router, s, leaking)} }};
}}
"""
    return text


def birdc(router: RouterPlan, *command: str) -> str:
    """One birdc command on `router`'s control socket (a file: no namespace needed)."""
    return netns.run(None, ["birdc", "-s", str(router.control_socket), *command], timeout=10)


def established(router: RouterPlan) -> dict[str, bool]:
    """Each BGP session of `router` and whether it is Established."""
    out = {}
    for line in birdc(router, "show", "protocols").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "BGP":
            out[fields[0]] = fields[3] == "up" and "Established" in line
    return out


_PREFIX = re.compile(r"^(\d+\.\d+\.\d+\.\d+/\d+)\s")


def exported(router: RouterPlan, session: str) -> frozenset[ipaddress.IPv4Network]:
    """The prefixes `router` sends over `session` now."""
    text = birdc(router, "show", "route", "export", session)
    return frozenset(
        ipaddress.IPv4Network(m.group(1))
        for line in text.splitlines()
        if (m := _PREFIX.match(line))
    )


def reconfigure(router: RouterPlan, leaking: bool) -> None:
    """Rewrite bird.conf and have bird apply it, as an operator would (`birdc configure`):
    sessions whose filters changed send what the new filter lets out, and withdraw what it
    no longer does."""
    router.config.write_text(config(router, leaking))
    out = birdc(router, "configure")
    if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
        raise netns.LabCommandError(f"bird of {router.label} refused its new config: {out.strip()}")


def announce_held(router: RouterPlan, on: bool) -> None:
    """Announce (or withdraw) the router's held prefixes: enable its `held` static protocol."""
    birdc(router, "enable" if on else "disable", HELD)
