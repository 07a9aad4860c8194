"""A secret's file is read only when its owner alone may read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from overcast.secretfile import ExposedSecretError, read_secret_file


def secret_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "site.key"
    path.write_bytes(b"s3cret\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_file_is_read(tmp_path: Path, mode: int) -> None:
    assert read_secret_file(secret_file(tmp_path, mode), "key", "regenerate it") == b"s3cret\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_file_others_may_read_is_refused_naming_file_and_fix(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(ExposedSecretError) as exc:
        read_secret_file(path, "key", renew="regenerate it")
    assert str(exc.value) == (
        f"{path} is readable by other users; run 'chmod 600 {path}' and consider the key "
        "leaked (regenerate it)"
    )


def test_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_secret_file(tmp_path / "nope.key", "key", "regenerate it")
