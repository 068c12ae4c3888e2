"""The board driver: registers by name, images in, logits out (protocol: docs/board.md).

``Board(link, registers)`` speaks :mod:`asqhw.host.protocol` over a :class:`~asqhw.host.link.Link`.
``registers`` is the accelerator's register map as data: register name -> word address
(``asqhw.hdl.accel.regmap`` for the network accelerator).
"""

from __future__ import annotations

from asqhw.core.errors import UserError

from . import protocol as P
from .link import Link

__all__ = ["Board", "BoardError"]


class BoardError(UserError):
    """The board answered something the protocol does not allow, or reported an error."""


class Board:
    """A board behind a link.

    Parameters
    ----------
    link : Link
    registers : dict[str, int]
        Register name -> word address (0..63).
    """

    def __init__(self, link: Link, registers: dict):
        self.link = link
        bad = {k: v for k, v in registers.items() if not (isinstance(v, int) and 0 <= v < P.REG_ADDRESSES)}
        if bad:
            raise UserError(f"register map: addresses must be 0..{P.REG_ADDRESSES - 1}, not {bad}")
        self.registers = dict(registers)
        self.bytes_sent = 0
        self.bytes_received = 0

    # --- transport -----------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        self.link.write(data)
        self.bytes_sent += len(data)

    def _expect(self, head: bytes, n: int, what: str) -> bytes:
        """Read the reply's first byte (must be ``head``) and ``n`` more bytes."""
        first = self.link.read(1, what)
        self.bytes_received += 1
        if first != head:
            if first == b"?":
                raise BoardError(f"{self.link.name}: the board refused the {what[:-6] or what} command ('?')")
            raise BoardError(f"{self.link.name}: expected {head!r} as the {what}, got {first!r}: "
                             "not an asq-hw board, or the link lost bytes")
        rest = self.link.read(n, what) if n else b""
        self.bytes_received += n
        return rest

    def _addr(self, reg) -> int:
        if isinstance(reg, int):
            return reg
        if reg not in self.registers:
            raise UserError(f"register map has no register {reg!r} (has {', '.join(self.registers)})")
        return self.registers[reg]

    # --- commands ------------------------------------------------------------------------
    def status(self) -> list[str]:
        """Names of the bridge's sticky error flags (they are cleared); checks the protocol version."""
        self._send(P.STATUS_CMD)
        flags, version = self._expect(b"S", 2, "status reply")
        if version != P.VERSION:
            raise BoardError(f"{self.link.name}: the board speaks protocol version {version}, "
                             f"this driver {P.VERSION}")
        return P.flag_names(flags)

    def read(self, reg) -> int:
        """The 32-bit value of a register (name or address)."""
        self._send(P.read_cmd(self._addr(reg)))
        return P.parse_word(self._expect(b"R", 4, "read reply"))

    def write(self, reg, value: int) -> None:
        """Write a 32-bit register (name or address)."""
        self._send(P.write_cmd(self._addr(reg), value))
        self._expect(b"W", 0, "write reply")

    def send_image(self, codes) -> None:
        """Stream one image's input codes (signed 8-bit) to the accelerator."""
        self._send(P.image_cmd(codes))
        self._expect(b"I", 0, "image reply")

    def read_logits(self, limit: int = 1 << 16) -> list[int]:
        """The logits of the last image, until the one flagged last."""
        self._send(P.LOGITS_CMD)
        self._expect(b"L", 0, "logits reply")
        out = []
        while True:
            value, last = P.parse_logit(self.link.read(P.LOGIT_BYTES, "logit"))
            self.bytes_received += P.LOGIT_BYTES
            out.append(value)
            if last:
                return out
            if len(out) >= limit:
                raise BoardError(f"{self.link.name}: more than {limit} logits without a last flag")

    def classify(self, codes) -> list[int]:
        """Send one image, return its logits (the accelerator starts on the image's last code)."""
        self.send_image(codes)
        return self.read_logits()
