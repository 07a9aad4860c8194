"""Files that hold a secret (a private key, a password): only their owner may read them, as
ssh insists for a private key. Every part that reads one checks it the same way here."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ExposedSecretError(Exception):
    """A secret's file is open to group or others; the message names the file and the fix."""


def read_secret_file(path: Path, secret: str, renew: str) -> bytes:
    """The bytes of `path`, which holds a `secret` ("password", "key"). A file that group or
    others may read is refused with ExposedSecretError, which says to `chmod 600` it and how
    to `renew` the secret, as it may be known by now. OSError (FileNotFoundError included) is
    the caller's to explain: it knows how the file is made."""
    with path.open("rb") as file:
        # The mode of the file opened, not of whatever the path names a moment later.
        if os.fstat(file.fileno()).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ExposedSecretError(
                f"{path} is readable by other users; run 'chmod 600 {path}' and consider the "
                f"{secret} leaked ({renew})"
            )
        return file.read()
