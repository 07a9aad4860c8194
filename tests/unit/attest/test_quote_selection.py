"""Which PCRs a TPMS_ATTEST quote covers (TPM 2.0 Part 2, section 10.12)."""

from __future__ import annotations

import struct

from attest.verify import quoted_pcrs

TPM_GENERATED = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018


def attest(selections: list[tuple[int, bytes]], extra: bytes = b"nonce") -> bytes:
    head = struct.pack(">IH", TPM_GENERATED, TPM_ST_ATTEST_QUOTE)
    signer = struct.pack(">H", 4) + b"\x00\x0b\xaa\xbb"
    extra_data = struct.pack(">H", len(extra)) + extra
    clock = bytes(17) + bytes(8)  # TPMS_CLOCK_INFO, firmwareVersion
    sel = struct.pack(">I", len(selections)) + b"".join(
        struct.pack(">HB", alg, len(bitmap)) + bitmap for alg, bitmap in selections
    )
    digest = struct.pack(">H", 32) + bytes(32)
    return head + signer + extra_data + clock + sel + digest


def test_sha256_bank_bitmap_is_read_per_pcr() -> None:
    assert quoted_pcrs(attest([(0x000B, b"\x00\x80\x00")])) == [15]
    assert quoted_pcrs(attest([(0x000B, b"\x00\x00\x01")])) == [16]
    assert quoted_pcrs(attest([(0x000B, b"\x01\x80\x00")])) == [0, 15]


def test_other_banks_do_not_count_and_truncated_quotes_cover_nothing() -> None:
    assert quoted_pcrs(attest([(0x0004, b"\x00\x80\x00")])) == []  # SHA-1 bank
    assert quoted_pcrs(attest([(0x000B, b"\x00\x80\x00")])[:30]) == []
