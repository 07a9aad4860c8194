"""Overcast for Mininet's `mn`:

    sudo mn --custom lab/mininet_topos.py --topo overcast,sites=3,segments=2,hosts=1 \\
        --controller overcast
    sudo mn --custom lab/mininet_topos.py --topo overcast,config=overcast.yaml --controller overcast

Sites are OVS switches (userspace datapath) our os-ken controller programs, joined by
WireGuard over two shaped provider networks; `pingall` passes within each segment and fails
between segments. The network and everything it made go away when mn exits. The same
network from Python: `lab.mininet_net.overcast_net()`.
"""

import inspect
import os
import subprocess
import sys
from pathlib import Path

if "lab" not in sys.modules:  # read by mn's --custom, not imported as lab.mininet_topos
    # mn runs this file with exec(), without __file__; the code knows where it came from.
    _here = Path(inspect.getframeinfo(inspect.currentframe()).filename)  # type: ignore[arg-type]
    _root = _here.resolve().parents[1]
    sys.path.insert(0, str(_root))
    try:
        import lab.mininet_net  # noqa: F401 (can Overcast be imported here?)
    except ImportError as _missing:
        # Debian's mn runs on /usr/bin/python3, which has Mininet but not Overcast's
        # dependencies: run mn again on the checkout's .venv (./dev makes it), which has both.
        _venv = _root / ".venv"
        _python = _venv / "bin" / "python"
        if (
            os.environ.get("OVERCAST_MN_ON_VENV")
            or not _python.exists()
            # mn imports Mininet before it reads this file: a .venv made before Mininet was
            # a dependency would fail there with a bare traceback.
            or subprocess.run([_python, "-c", "import mininet"], capture_output=True).returncode
        ):
            raise SystemExit(
                f"{_here}: cannot import Overcast and Mininet ({_missing}); create or update "
                f"{_venv} with `./dev test` (or .venv/bin/pip install -e .)"
            ) from None
        os.environ["OVERCAST_MN_ON_VENV"] = "1"  # once: a .venv that fails too ends here
        os.execv(_python, [str(_python), *sys.argv])

from lab.mininet_net import OvercastController, OvercastTopo, own_cleanup

# mn calls its global cleanup() on Ctrl-C or an error: Mininet's kills every Mininet host,
# ping and controller on the machine. Ours stops only what this network started.
_mn = sys.modules.get("__main__")
if _mn is not None and hasattr(_mn, "MininetRunner") and callable(getattr(_mn, "cleanup", None)):
    setattr(_mn, "cleanup", own_cleanup)  # noqa: B010 (a module mypy cannot see)

# What mn's --custom reads: `--topo overcast,...` and `--controller overcast`.
topos = {"overcast": OvercastTopo}
controllers = {"overcast": OvercastController}
