"""Lab ids and the names derived from them.

Every namespace, file and machine-global interface a lab creates starts with its lab id
(`oc` + 4 characters), so two labs, or a lab and anything else on the machine, never
collide, and whatever a crash leaves behind is easy to find. Interfaces inside the lab's
own namespaces cannot collide with anything outside, so they keep short names an engineer
reads at a glance (`wan`, `mgmt`, `finance-1`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import string
from collections.abc import Iterable

LAB_ID_RE = re.compile(r"^oc[a-z0-9]{4}$")
IFNAMSIZ = 16  # Linux interface names hold at most IFNAMSIZ - 1 = 15 characters


def check_lab_id(text: str) -> str:
    if not LAB_ID_RE.match(text):
        raise ValueError(
            f"{text!r} is not a lab id; lab ids are 'oc' plus 4 lower-case letters or digits "
            "(see `overcast lab status`)"
        )
    return text


def new_lab_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "oc" + "".join(secrets.choice(alphabet) for _ in range(4))


def lab_id_for(config_path: str) -> str:
    """The lab id a config file gets by default: the same file always builds the same lab."""
    digest = hashlib.sha256(os.path.realpath(config_path).encode()).digest()
    return "oc" + base64.b32encode(digest).decode()[:4].lower()


def check_ifname(name: str) -> str:
    if not 0 < len(name) < IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ - 1} characters")
    return name


# Namespaces. Config names never contain '.', so the role suffixes cannot clash with a site.
def site_netns(lab_id: str, site: str) -> str:
    return f"{lab_id}-{site}"


def host_netns(lab_id: str, site: str, segment: str, number: int) -> str:
    return f"{lab_id}-{site}.{segment}.{number}"


def underlay_netns(lab_id: str, network: str | None = None) -> str:
    """The namespace of an underlay network: `<lab>.wan` for a config's one unnamed
    underlay, `<lab>.wan.<network>` for each named one."""
    return f"{lab_id}.wan" if network is None else f"{lab_id}.wan.{network}"


def controller_netns(lab_id: str) -> str:
    return f"{lab_id}.ctl"


def sso_netns(lab_id: str) -> str:
    """Where the `sso` scenario runs its OpenID provider, gateway and app, on loopback."""
    return f"{lab_id}.sso"


def peering_netns(lab_id: str) -> str:
    """The namespace of a BGP lab's peering LAN (lab.bgp), where every router meets."""
    return f"{lab_id}.peering"


def router_netns(lab_id: str, asn: int) -> str:
    """A BGP router's namespace, named after its AS: `<lab>.as64500`."""
    return f"{lab_id}.as{asn}"


def guard_netns(lab_id: str) -> str:
    """The namespace our BGP guard (`overcast guard watch`) runs in."""
    return f"{lab_id}.guard"


def lab_netns(lab_id: str, namespaces: Iterable[str]) -> list[str]:
    """The namespaces among `namespaces` that belong to lab `lab_id`, by their names."""
    return [n for n in namespaces if n.startswith((f"{lab_id}-", f"{lab_id}."))]


_LAB_NETNS_RE = re.compile(r"^(oc[a-z0-9]{4})[-.]")


def lab_ids_of(namespaces: Iterable[str]) -> list[str]:
    """The lab ids that namespaces named like a lab's carry: what `lab down --all` removes
    even when a crash (or a hand) took the lab's state dir away."""
    return sorted({m.group(1) for n in namespaces if (m := _LAB_NETNS_RE.match(n))})


# Interfaces inside the lab's namespaces.
HOST_IF = "eth0"  # a host's one NIC
WAN_IF = "wan"  # a site's underlay NIC (wan-<network> on each named underlay network)
MGMT_IF = "mgmt"  # a site's management NIC, toward the controller
WAN_BRIDGE = "wan"  # the Linux bridge that is the underlay "internet"
MGMT_BRIDGE = "mgmt"  # the Linux bridge of the management network
PEERING_BRIDGE = "peering"  # the Linux bridge of a BGP lab's peering LAN
PEERING_IF = "lan"  # a BGP router's (and the guard's) NIC on the peering LAN


def wan_if(network: str | None = None) -> str:
    """A site's NIC on an underlay network (`network` None: the config's one unnamed one)."""
    return WAN_IF if network is None else check_ifname(f"{WAN_IF}-{network}")


def access_port(segment: str, number: int) -> str:
    """The site switch's port facing host `number` of `segment`."""
    return check_ifname(f"{segment}-{number}")


def lan_port(segment: str) -> str:
    """A site's interface toward the LAN of its routed host on L3 `segment`."""
    return check_ifname(f"lan-{segment}")


def uplink_port(site: str) -> str:
    """The port on the underlay or management bridge facing `site`."""
    return check_ifname(f"to-{site}")
