"""A site's TPM through tpm2-tools, and a software TPM (swtpm) for the lab.

Why tpm2-tools and not tpm2-pytss: PyPI's tpm2-pytss ships no wheel (it builds against
libtss2-dev with a C compiler on every install), and the endorsement-key policy sessions
that ActivateCredential and AK creation need are what tpm2-tools already gets right. Its
file formats are also what Keylime's verifier functions read (attest/verify.py), so the
quote goes from `tpm2_quote` to `keylime.tpm.tpm_util.checkquote` untouched.

Keys are persistent objects (TPM 2.0 Part 1, section 37; handles from the TCG EK Credential
Profile, section 2.2.1.4): the endorsement key (EK, RSA 2048, the standard template) at
0x81010001, the attestation key (AK: restricted, signing, fixedTPM, made under the EK) at
0x81010002, so they outlive the agent and only a TPM clear removes them. The AK is ECC
P-256 (ECDSA quotes): a TPM makes one in a tenth of the time of an RSA 2048 key (0.17 s
against 1.4 s on a swtpm here), and Keylime checks both.

Without a resource manager the TPM's few transient slots fill up (ARCHITECTURE.md), so every
call that loads a transient object or starts a session flushes what it made.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

EK_HANDLE = "0x81010001"
AK_HANDLE = "0x81010002"
SWTPM_PID = "swtpm.pid"
SWTPM_SOCKET = "tpm.sock"
SWTPM_LOG = "swtpm.log"


class TpmError(Exception):
    """A TPM command failed; the message names the command, the TPM and the fix."""


@dataclass(frozen=True)
class Identity:
    """What a site's TPM shows the enterprise at enrolment (marshalled TPM2B_PUBLIC)."""

    ek_public: bytes
    ak_public: bytes


@dataclass(frozen=True)
class Quote:
    """tpm2_quote's three outputs: the signed TPMS_ATTEST, its TPMT_SIGNATURE and the
    quoted PCR values (tpm2-tools' selection + digests format)."""

    message: bytes
    signature: bytes
    pcrs: bytes


class Tpm:
    """One TPM, reached through a TCTI string: `device:/dev/tpmrm0` for a host's TPM
    (through the kernel's resource manager), `swtpm:path=DIR/tpm.sock` for a lab swtpm."""

    def __init__(self, tcti: str) -> None:
        self.tcti = tcti

    def __repr__(self) -> str:
        return f"Tpm({self.tcti!r})"

    def _run(self, *argv: str, what: str) -> str:
        env = os.environ | {"TPM2TOOLS_TCTI": self.tcti}
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise TpmError(f"{argv[0]} is not installed; install Debian's tpm2-tools") from None
        except subprocess.TimeoutExpired:
            raise TpmError(f"{what}: the TPM at {self.tcti} did not answer in 30 s") from None
        if proc.returncode != 0:
            # tpm2-tools prints the ESYS error code's text last.
            detail = " / ".join(proc.stderr.strip().splitlines()[-2:]) or "no output"
            raise TpmError(f"{what} failed on the TPM at {self.tcti}: {detail}")
        return proc.stdout

    def persistent_handles(self) -> set[str]:
        out = self._run("tpm2_getcap", "handles-persistent", what="listing persistent keys")
        return {line.strip("- ").lower() for line in out.splitlines() if line.strip()}

    def ensure_keys(self) -> Identity:
        """The EK and an AK bound to it, made once and kept (module docstring)."""
        handles = self.persistent_handles()
        with tempfile.TemporaryDirectory(prefix="overcast-tpm-") as tmp:
            if EK_HANDLE not in handles:
                self._run(
                    "tpm2_createek", "-c", EK_HANDLE, "-G", "rsa", "-u", f"{tmp}/ek.pub",
                    what="creating the endorsement key",
                )  # fmt: skip
            if AK_HANDLE not in handles:
                self._run(
                    "tpm2_createak", "-C", EK_HANDLE, "-c", f"{tmp}/ak.ctx", "-G", "ecc",
                    "-g", "sha256", "-s", "ecdsa", "-u", f"{tmp}/ak.pub",
                    what="creating the attestation key",
                )  # fmt: skip
                self._run(
                    "tpm2_evictcontrol", "-c", f"{tmp}/ak.ctx", AK_HANDLE,
                    what="making the attestation key persistent",
                )  # fmt: skip
                self._run("tpm2_flushcontext", "-t", what="flushing transient objects")
            return Identity(self._public(EK_HANDLE, tmp), self._public(AK_HANDLE, tmp))

    def _public(self, handle: str, tmp: str) -> bytes:
        path = Path(tmp) / f"{handle}.pub"
        self._run("tpm2_readpublic", "-c", handle, "-o", str(path), what=f"reading {handle}")
        return path.read_bytes()

    def extend(self, pcr: int, digest: bytes) -> None:
        self._run("tpm2_pcrextend", f"{pcr}:sha256={digest.hex()}", what=f"extending PCR {pcr}")

    def read_pcr(self, pcr: int) -> bytes:
        out = self._run("tpm2_pcrread", f"sha256:{pcr}", what=f"reading PCR {pcr}")
        match = re.search(rf"^\s*{pcr}\s*:\s*0x([0-9A-Fa-f]{{64}})\s*$", out, re.M)
        if match is None:
            raise TpmError(f"tpm2_pcrread printed no SHA-256 value for PCR {pcr}: {out!r}")
        return bytes.fromhex(match.group(1))

    def quote(self, nonce: bytes, pcrs: Sequence[int]) -> Quote:
        """A quote by the AK over the SHA-256 bank's `pcrs`, qualified by `nonce` (its
        extraData, TPM 2.0 Part 3, section 18.4)."""
        selection = "sha256:" + ",".join(map(str, pcrs))
        with tempfile.TemporaryDirectory(prefix="overcast-tpm-") as tmp:
            self._run(
                "tpm2_quote", "-c", AK_HANDLE, "-l", selection, "-q", nonce.hex(),
                "-g", "sha256", "-m", f"{tmp}/msg", "-s", f"{tmp}/sig", "-o", f"{tmp}/pcrs",
                what="quoting",
            )  # fmt: skip
            return Quote(*(Path(tmp, n).read_bytes() for n in ("msg", "sig", "pcrs")))

    def activate_credential(self, blob: bytes) -> bytes:
        """The secret in a MakeCredential `blob` (tpm2-tools format): only this TPM's EK
        can open its seed, and only if it holds a key of the name the blob was made for
        (TPM 2.0 Part 1, section 24). The EK's policy needs PolicySecret(endorsement)."""
        with tempfile.TemporaryDirectory(prefix="overcast-tpm-") as tmp:
            Path(tmp, "blob").write_bytes(blob)
            session = f"{tmp}/session.ctx"
            self._run(
                "tpm2_startauthsession", "--policy-session", "-S", session,
                what="starting the EK policy session",
            )  # fmt: skip
            try:
                self._run("tpm2_policysecret", "-S", session, "-c", "e", what="EK policy")
                # The secret is printed (certinfodata:HEX) and read from the pipe: it is
                # never written to a file here.
                out = self._run(
                    "tpm2_activatecredential", "-c", AK_HANDLE, "-C", EK_HANDLE,
                    "-i", f"{tmp}/blob", "-o", "/dev/null", "-P", f"session:{session}",
                    what="activating the credential",
                )  # fmt: skip
            finally:
                self._run("tpm2_flushcontext", session, what="closing the EK policy session")
        match = re.search(r"certinfodata:\s*([0-9a-fA-F]+)", out)
        if match is None:
            raise TpmError("tpm2_activatecredential printed no secret")
        return bytes.fromhex(match.group(1))


# -- swtpm: a software TPM per lab site --------------------------------------------------


def swtpm_tcti(state_dir: Path) -> str:
    return f"swtpm:path={state_dir / SWTPM_SOCKET}"


def start_swtpm(state_dir: Path, *, netns: str | None = None) -> Tpm:
    """A software TPM 2.0 with its state in `state_dir` (manufactured on first use: EK at
    0x81010001 and PCR banks), serving on a Unix socket there, as a daemon. Unix sockets
    need no port, so any number of them run side by side. Started with `startup-clear`, as
    a host's firmware would, so each start is a reboot: PCRs are zero again."""
    for program in ("swtpm", "swtpm_setup"):
        if shutil.which(program) is None:
            raise TpmError(f"{program} is not installed; install Debian's swtpm and swtpm-tools")
    state_dir = state_dir.absolute()  # swtpm --daemon changes to /
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not any(state_dir.glob("tpm2-00.permall")):
        setup = subprocess.run(
            ["swtpm_setup", "--tpm2", "--tpmstate", str(state_dir), "--createek",
             "--overwrite"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if setup.returncode != 0:
            raise TpmError(f"swtpm_setup failed in {state_dir}: {setup.stdout[-300:]}")
    sock = state_dir / SWTPM_SOCKET
    for stale in (sock, Path(f"{sock}.ctrl")):
        stale.unlink(missing_ok=True)
    prefix = ["ip", "netns", "exec", netns] if netns else []
    # The control channel sits at <socket>.ctrl, where the TSS's swtpm TCTI looks for it.
    started = subprocess.run(
        [*prefix, "swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state_dir}",
         "--server", f"type=unixio,path={sock}", "--ctrl", f"type=unixio,path={sock}.ctrl",
         "--flags", "not-need-init,startup-clear", "--daemon",
         "--pid", f"file={state_dir / SWTPM_PID}", "--log", f"file={state_dir / SWTPM_LOG}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if started.returncode != 0:
        raise TpmError(f"swtpm did not start in {state_dir}: {started.stderr.strip()}")
    return Tpm(swtpm_tcti(state_dir))


def swtpm_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / SWTPM_PID).read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "swtpm" else None


def stop_swtpm(state_dir: Path) -> None:
    """Stop the swtpm serving `state_dir` (its state stays: EK and AK survive)."""
    pid = swtpm_pid(state_dir)
    if pid is None:
        return
    os.kill(pid, 15)
    for _ in range(100):
        if swtpm_pid(state_dir) is None:
            return
        time.sleep(0.02)
