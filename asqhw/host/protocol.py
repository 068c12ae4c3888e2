"""The board's byte protocol (docs/board.md, "Protocol"): command encoders and reply sizes.

Pure functions on bytes; the link that carries them is :mod:`asqhw.host.link`.
"""

from __future__ import annotations

__all__ = ["VERSION", "FLAGS", "REG_ADDRESSES", "write_cmd", "read_cmd", "image_cmd", "LOGITS_CMD",
           "STATUS_CMD", "parse_word", "parse_logit", "flag_names", "MAX_CODES", "LOGIT_BYTES"]

VERSION = 1
FLAGS = {"RX_OVERRUN": 0, "RX_FRAME_ERROR": 1, "BAD_COMMAND": 2, "TIMEOUT": 3}
REG_ADDRESSES = 64              # word addresses 0..63
MAX_CODES = 65535
LOGIT_BYTES = 5                 # value (4 bytes LE, two's complement), flags (bit 0: last)
LOGITS_CMD = b"L"
STATUS_CMD = b"S"


def _addr(addr: int) -> int:
    if not (isinstance(addr, int) and 0 <= addr < REG_ADDRESSES):
        raise ValueError(f"register address must be 0..{REG_ADDRESSES - 1}, not {addr!r}")
    return addr


def write_cmd(addr: int, value: int) -> bytes:
    """``W``, address, the 32-bit value little-endian (answered by ``W``)."""
    if not (isinstance(value, int) and 0 <= value < 1 << 32):
        raise ValueError(f"register value must be 0..2^32-1, not {value!r}")
    return b"W" + bytes([_addr(addr)]) + value.to_bytes(4, "little")


def read_cmd(addr: int) -> bytes:
    """``R``, address (answered by ``R`` and 4 bytes, little-endian)."""
    return b"R" + bytes([_addr(addr)])


def image_cmd(codes) -> bytes:
    """``I``, the count (2 bytes LE), one byte per signed 8-bit code (answered by ``I``)."""
    codes = [int(c) for c in codes]
    if not 1 <= len(codes) <= MAX_CODES:
        raise ValueError(f"an image has 1..{MAX_CODES} codes, not {len(codes)}")
    bad = [c for c in codes if not -128 <= c <= 127]
    if bad:
        raise ValueError(f"input codes must be -128..127, not {bad[0]}")
    return b"I" + len(codes).to_bytes(2, "little") + bytes(c & 0xFF for c in codes)


def parse_word(data: bytes) -> int:
    """The unsigned 32-bit value of 4 little-endian bytes."""
    return int.from_bytes(data, "little")


def parse_logit(data: bytes) -> tuple[int, bool]:
    """``(value, last)`` of one 5-byte logit record."""
    return int.from_bytes(data[:4], "little", signed=True), bool(data[4] & 1)


def flag_names(flags: int) -> list[str]:
    """Names of the set bits of the ``S`` reply's flag byte."""
    return [name for name, bit in FLAGS.items() if flags >> bit & 1]
