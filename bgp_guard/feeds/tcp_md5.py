"""TCP-MD5 (RFC 2385) for the BGP session: every TCP segment to and from a neighbour carries
an MD5 digest keyed with a password both routers share. Most operators require it on eBGP.

Linux does the signing; a socket only needs the key for each neighbour's address, set with
the TCP_MD5SIG socket option (linux/tcp.h):

    struct tcp_md5sig {
        struct __kernel_sockaddr_storage tcpm_addr;  /* 128 bytes: the neighbour */
        __u8  tcpm_flags;                            /* TCP_MD5SIG_EXT only */
        __u8  tcpm_prefixlen;                        /* TCP_MD5SIG_EXT only */
        __u16 tcpm_keylen;                           /* 0 deletes the key */
        int   tcpm_ifindex;                          /* TCP_MD5SIG_EXT only */
        __u8  tcpm_key[TCP_MD5SIG_MAXKEYLEN];        /* 80 bytes */
    };

A listening socket holds one key per neighbour and its accepted connections inherit them; a
connecting socket needs the key before connect(), so the SYN is signed. A segment that
arrives unsigned, signed with no key configured, or with a wrong digest is dropped by the
kernel without a reply (RFC 2385 section 2.0), which counts it in TcpExtTCPMD5NotFound,
TcpExtTCPMD5Unexpected or TcpExtTCPMD5Failure (`nstat -az 'TcpExtTCPMD5*'`).

Passwords come from files (mode 0600) and are never logged, printed or put in a repr.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from bgp_guard.errors import InputError
from overcast.secretfile import ExposedSecretError, read_secret_file

TCP_MD5SIG = 14  # linux/tcp.h; the socket module does not export it
TCP_MD5SIG_MAXKEYLEN = 80  # linux/tcp.h
SOCKADDR_STORAGE = 128  # sizeof(struct __kernel_sockaddr_storage)
# flags, prefixlen, keylen, ifindex in native byte order, as the kernel reads them.
_MD5SIG_FIELDS = struct.Struct("=BBHi")
MD5SIG_SIZE = SOCKADDR_STORAGE + _MD5SIG_FIELDS.size + TCP_MD5SIG_MAXKEYLEN  # 216


class TcpMd5Error(Exception):
    """The kernel refused a TCP-MD5 key; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class TcpMd5Key:
    """A neighbour's TCP-MD5 password; `source` (the file it came from) is what a repr or
    a log line may show, never the password."""

    password: bytes = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.password:
            raise ValueError(
                f"{self.source or 'the TCP-MD5 password'} is empty; write the password the "
                "neighbour's router has configured"
            )
        if len(self.password) > TCP_MD5SIG_MAXKEYLEN:
            raise ValueError(
                f"{self.source or 'the TCP-MD5 password'} is {len(self.password)} bytes; "
                f"TCP-MD5 keys are at most {TCP_MD5SIG_MAXKEYLEN} bytes (Linux "
                "TCP_MD5SIG_MAXKEYLEN): use a shorter password on both routers"
            )


def read_password_file(path: Path) -> TcpMd5Key:
    """The password in `path`: its first line, without the line ending. The file must not
    be readable by group or others, like an ssh key."""
    try:
        data = read_secret_file(path, "password", renew="change it on both routers")
    except FileNotFoundError:
        raise InputError(
            f"password file {path} does not exist; write the neighbour's TCP-MD5 password "
            f"in it and run 'chmod 600 {path}' (relative paths start at the config file)"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read password file {path}: {exc.strerror}") from None
    except ExposedSecretError as exc:
        raise InputError(f"password file {exc}") from None
    password = data.removesuffix(b"\n").removesuffix(b"\r")
    if b"\n" in password:
        raise InputError(f"password file {path} has more than one line; keep only the password")
    try:
        return TcpMd5Key(password, str(path))
    except ValueError as exc:
        raise InputError(f"password file {exc}") from None


def sockaddr(peer: str, family: int) -> bytes:
    """`peer` as a struct sockaddr_in or sockaddr_in6, padded to a sockaddr_storage; the
    kernel wants the family of the socket (`family`) and refuses the other."""
    address = ipaddress.ip_address(peer)
    wanted = 6 if family == socket.AF_INET6 else 4
    if address.version != wanted:
        raise ValueError(f"{peer} is not an IPv{wanted} address, but the socket is")
    family_field = struct.pack("=H", family)  # sa_family_t is host byte order
    if address.version == 4:
        raw = family_field + bytes(2) + address.packed + bytes(8)  # port 0, sin_zero
    else:
        raw = family_field + bytes(2 + 4) + address.packed + bytes(4)  # port, flowinfo, scope
    return raw.ljust(SOCKADDR_STORAGE, b"\0")


def md5sig(peer: str, key: TcpMd5Key, family: int) -> bytes:
    """The struct tcp_md5sig that sets `key` for `peer` on a socket of `family`."""
    fields = _MD5SIG_FIELDS.pack(0, 0, len(key.password), 0)
    return sockaddr(peer, family) + fields + key.password.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")


def set_key(sock: socket.socket, peer: str, key: TcpMd5Key) -> None:
    """Sign every segment exchanged with `peer` on `sock` (and on the connections a
    listening `sock` accepts from it)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, key, sock.family))
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            raise TcpMd5Error(
                f"this kernel has no TCP-MD5 (RFC 2385) support, needed for the password of "
                f"neighbour {peer}; use a kernel built with CONFIG_TCP_MD5SIG, or remove its "
                "password_file on both routers"
            ) from None
        raise TcpMd5Error(
            f"cannot set the TCP-MD5 password of neighbour {peer} ({key.source}): {exc.strerror}"
        ) from None
