"""TCP-MD5 (RFC 2385) key packing and password files. The struct layout is checked against
ctypes' own layout of linux/tcp.h's struct tcp_md5sig, and one golden byte string each for
IPv4 and IPv6; that the kernel signs with it is the integration tests' job."""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

import pytest

from bgp_guard.errors import InputError
from bgp_guard.feeds import tcp_md5
from bgp_guard.feeds.tcp_md5 import (
    MD5SIG_SIZE,
    TCP_MD5SIG_MAXKEYLEN,
    TcpMd5Error,
    TcpMd5Key,
    md5sig,
    read_password_file,
    set_key,
    sockaddr,
)

SECRET = b"s3cret-bgp"


class SockaddrIn(ctypes.Structure):  # netinet/in.h
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_ubyte * 2),
        ("sin_addr", ctypes.c_ubyte * 4),
        ("sin_zero", ctypes.c_ubyte * 8),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_ubyte * 2),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_ubyte * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class SockaddrStorage(ctypes.Union):  # __kernel_sockaddr_storage: 128 bytes, pointer-aligned
    _fields_ = [
        ("v4", SockaddrIn),
        ("v6", SockaddrIn6),
        ("raw", ctypes.c_ubyte * 128),
        ("_align", ctypes.c_void_p),
    ]


class TcpMd5Sig(ctypes.Structure):  # linux/tcp.h
    _fields_ = [
        ("tcpm_addr", SockaddrStorage),
        ("tcpm_flags", ctypes.c_uint8),
        ("tcpm_prefixlen", ctypes.c_uint8),
        ("tcpm_keylen", ctypes.c_uint16),
        ("tcpm_ifindex", ctypes.c_int),
        ("tcpm_key", ctypes.c_ubyte * 80),
    ]


def reference(family: int, packed_address: bytes, key: bytes) -> bytes:
    sig = TcpMd5Sig()
    if family == socket.AF_INET:
        sig.tcpm_addr.v4.sin_family = family
        sig.tcpm_addr.v4.sin_addr[:] = list(packed_address)
    else:
        sig.tcpm_addr.v6.sin6_family = family
        sig.tcpm_addr.v6.sin6_addr[:] = list(packed_address)
    sig.tcpm_keylen = len(key)
    sig.tcpm_key[: len(key)] = list(key)
    return bytes(sig)


@pytest.mark.parametrize(
    ("peer", "family", "packed"),
    [
        ("192.0.2.1", socket.AF_INET, socket.inet_pton(socket.AF_INET, "192.0.2.1")),
        ("2001:db8::1", socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "2001:db8::1")),
    ],
)
def test_md5sig_matches_the_kernel_struct(peer: str, family: int, packed: bytes) -> None:
    assert ctypes.sizeof(TcpMd5Sig) == MD5SIG_SIZE == 216
    got = md5sig(peer, TcpMd5Key(SECRET), family)
    assert got == reference(family, packed, SECRET)


def test_md5sig_golden_bytes() -> None:
    got = md5sig("192.0.2.1", TcpMd5Key(b"abc"), socket.AF_INET)
    family = socket.AF_INET.to_bytes(2, "little")  # sa_family_t: host order (x86, arm64)
    assert got[:16] == family + bytes.fromhex("0000 c0000201 0000000000000000")
    assert got[16:128] == bytes(112)
    assert got[128:136] == bytes.fromhex("0000 0300 00000000")  # flags, prefixlen, keylen 3
    assert got[136:] == b"abc" + bytes(77)
    v6 = sockaddr("2001:db8::1", socket.AF_INET6)
    assert v6[:28] == socket.AF_INET6.to_bytes(2, "little") + bytes(6) + bytes.fromhex(
        "20010db8000000000000000000000001"
    ) + bytes(4)
    assert len(v6) == 128 and v6[28:] == bytes(100)


def test_a_key_is_for_a_neighbour_of_the_socket_family() -> None:
    with pytest.raises(ValueError, match="not an IPv4 address"):
        sockaddr("2001:db8::1", socket.AF_INET)
    with pytest.raises(ValueError, match="not an IPv6 address"):
        sockaddr("192.0.2.1", socket.AF_INET6)


def test_a_kernel_without_tcp_md5_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel built without CONFIG_TCP_MD5SIG answers TCP_MD5SIG with ENOPROTOOPT, as any
    kernel answers a TCP option it does not know: ask this one for an unknown option."""
    monkeypatch.setattr(tcp_md5, "TCP_MD5SIG", 0x7FFF)
    with socket.socket() as sock, pytest.raises(TcpMd5Error) as exc:
        set_key(sock, "192.0.2.1", TcpMd5Key(SECRET, "bgp.password"))
    assert "no TCP-MD5 (RFC 2385) support" in str(exc.value)
    assert "CONFIG_TCP_MD5SIG" in str(exc.value) and "192.0.2.1" in str(exc.value)


def test_key_length_limits_and_repr() -> None:
    assert len(md5sig("192.0.2.1", TcpMd5Key(b"k" * TCP_MD5SIG_MAXKEYLEN), 2)) == MD5SIG_SIZE
    with pytest.raises(ValueError, match="81 bytes; TCP-MD5 keys are at most 80 bytes"):
        TcpMd5Key(b"k" * 81, "p.key")
    with pytest.raises(ValueError, match="is empty"):  # keylen 0 would delete the key
        TcpMd5Key(b"")
    assert "s3cret" not in repr(TcpMd5Key(SECRET, "bgp.key"))
    assert "bgp.key" in repr(TcpMd5Key(SECRET, "bgp.key"))


def password_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "bgp.password"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("data", [SECRET, SECRET + b"\n", SECRET + b"\r\n"])
def test_password_file_holds_one_line(tmp_path: Path, data: bytes) -> None:
    key = read_password_file(password_file(tmp_path, data))
    assert key.password == SECRET and key.source.endswith("bgp.password")


@pytest.mark.parametrize(
    ("data", "mode", "fix"),
    [
        (SECRET, 0o644, "is readable by other users; run 'chmod 600 {path}'"),
        (SECRET, 0o640, "is readable by other users; run 'chmod 600 {path}'"),
        (b"", 0o600, "password file {path} is empty; write the password"),
        (b"\n", 0o600, "password file {path} is empty"),
        (SECRET + b"\nmore\n", 0o600, "has more than one line; keep only the password"),
        (b"x" * 81 + SECRET, 0o600, "is 91 bytes; TCP-MD5 keys are at most 80 bytes"),
    ],
)
def test_bad_password_files_name_the_file_and_fix(
    tmp_path: Path, data: bytes, mode: int, fix: str
) -> None:
    path = password_file(tmp_path, data, mode)
    with pytest.raises(InputError) as exc:
        read_password_file(path)
    assert fix.format(path=path) in str(exc.value)
    assert SECRET.decode() not in str(exc.value)


def test_missing_password_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist; write the neighbour's TCP-MD5"):
        read_password_file(tmp_path / "nope.password")
