"""The host bridge: a framed byte protocol from a UART to the accelerator's registers and streams.

Commands and replies, byte for byte, are specified in docs/board.md ("Protocol"). The
bridge takes one command at a time from ``rx`` and answers on ``tx``:

=======  =====================================  ==========================================
command  bytes after the command byte           reply
=======  =====================================  ==========================================
``W``    address, data (4 bytes, little end.)   ``W`` after the register write
``R``    address                                ``R`` and the register (4 bytes, little end.)
``I``    count n (2 bytes, LE, 1..65535), n     ``I`` once the last code has been accepted
         codes
``L``    -                                      ``L``, then 5 bytes per logit: value (4 bytes,
                                                LE, two's complement) and flags (bit 0: last)
``S``    -                                      ``S``, the sticky error flags, the protocol
                                                version; the flags are cleared
other    -                                      ``?`` (flag ``BAD_COMMAND``)
=======  =====================================  ==========================================

A command whose argument bytes stop arriving for ``timeout`` cycles is abandoned (flag
``TIMEOUT``); a byte received while ``L`` waits for a logit abandons the ``L`` (the byte
is dropped). A register address above 63 or an image count of 0 answers ``?``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PROTOCOL_VERSION", "CODE_LAYOUT", "LOGIT_LAYOUT", "FLAGS", "HostBridge"]

PROTOCOL_VERSION = 1

#: Payload of the accelerator's input stream (one input code per beat) and its output stream.
CODE_LAYOUT = data.StructLayout({"data": 8, "last": 1})
LOGIT_LAYOUT = data.StructLayout({"data": signed(32), "last": 1})

#: Bits of the sticky flag byte of the ``S`` reply.
FLAGS = {"RX_OVERRUN": 0, "RX_FRAME_ERROR": 1, "BAD_COMMAND": 2, "TIMEOUT": 3}

_W, _R, _I, _L, _S, _BAD = (ord(c) for c in "WRILS?")


class HostBridge(wiring.Component):
    """Command decoder between a byte stream pair and the accelerator's host interface.

    Parameters
    ----------
    timeout : int
        Cycles without an argument byte after which a command is abandoned (at least 1).

    Ports
    -----
    rx : In(stream.Signature(8)), tx : Out(stream.Signature(8))
        Bytes from and to the host (a UART).
    rx_overrun, rx_frame_error : In(1)
        Pulses from the UART receiver, kept in the sticky flags.
    csr_addr : Out(6), csr_w_en : Out(1), csr_w_data : Out(32), csr_r_en : Out(1), csr_r_data : In(32)
        The accelerator's register port (read data valid the cycle after ``csr_r_en``).
    codes : Out(stream.Signature(CODE_LAYOUT)), logits : In(stream.Signature(LOGIT_LAYOUT))
        To the accelerator's ``s_in`` and from its ``m_out``.
    busy : Out(1)
        High while a command is in progress.
    flags : Out(4)
        The sticky flags (``FLAGS``).
    """

    def __init__(self, *, timeout: int = 1 << 24):
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
            raise TypeError(f"timeout must be a positive integer, not {timeout!r}")
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "rx_overrun": In(1),
            "rx_frame_error": In(1),
            "csr_addr": Out(6),
            "csr_w_en": Out(1),
            "csr_w_data": Out(32),
            "csr_r_en": Out(1),
            "csr_r_data": In(32),
            "codes": Out(stream.Signature(CODE_LAYOUT)),
            "logits": In(stream.Signature(LOGIT_LAYOUT)),
            "busy": Out(1),
            "flags": Out(len(FLAGS)),
        })

    @property
    def timeout(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        addr = Signal(8)
        word = Signal(32)
        got = Signal(range(5))                  # argument bytes received of the current field
        left = Signal(16)                       # codes still to come
        out = Signal(40)                        # reply bytes, sent from the low end
        out_n = Signal(range(6))
        idle_for = Signal(range(self._timeout + 1))
        flags = Signal(len(FLAGS))
        m.d.comb += [self.flags.eq(flags), self.csr_addr.eq(addr[:6]), self.csr_w_data.eq(word)]
        with m.If(self.rx_overrun):
            m.d.sync += flags[FLAGS["RX_OVERRUN"]].eq(1)
        with m.If(self.rx_frame_error):
            m.d.sync += flags[FLAGS["RX_FRAME_ERROR"]].eq(1)

        def reply(value, n, then="SEND"):
            m.d.sync += [out.eq(value), out_n.eq(n)]
            m.next = then

        def arguments():
            """In a state that takes argument bytes: the timeout."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(self.rx.valid):
                m.d.sync += idle_for.eq(0)
            with m.Elif(idle_for == self._timeout - 1):
                m.d.sync += [idle_for.eq(0), flags[FLAGS["TIMEOUT"]].eq(1)]
                m.next = "CMD"
            with m.Else():
                m.d.sync += idle_for.eq(idle_for + 1)

        with m.FSM() as fsm:
            with m.State("CMD"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += [got.eq(0), idle_for.eq(0)]
                with m.If(self.rx.valid):
                    with m.Switch(self.rx.payload):
                        with m.Case(_W):
                            m.next = "W_ADDR"
                        with m.Case(_R):
                            m.next = "R_ADDR"
                        with m.Case(_I):
                            m.next = "I_COUNT"
                        with m.Case(_L):
                            reply(_L, 1, "SEND_L")
                        with m.Case(_S):
                            m.d.sync += flags.eq(0)
                            reply(_S | (flags << 8) | (PROTOCOL_VERSION << 16), 3)
                        with m.Default():
                            m.d.sync += flags[FLAGS["BAD_COMMAND"]].eq(1)
                            reply(_BAD, 1)
            with m.State("W_ADDR"):
                arguments()
                with m.If(self.rx.valid):
                    m.d.sync += addr.eq(self.rx.payload)
                    m.next = "W_DATA"
            with m.State("W_DATA"):
                arguments()
                with m.If(self.rx.valid):
                    m.d.sync += [word.eq((self.rx.payload << 24) | (word >> 8)), got.eq(got + 1)]
                    with m.If(got == 3):
                        m.next = "WRITE"
            with m.State("WRITE"):
                with m.If(addr[6:] != 0):
                    m.d.sync += flags[FLAGS["BAD_COMMAND"]].eq(1)
                    reply(_BAD, 1)
                with m.Else():
                    m.d.comb += self.csr_w_en.eq(1)
                    reply(_W, 1)
            with m.State("R_ADDR"):
                arguments()
                with m.If(self.rx.valid):
                    m.d.sync += addr.eq(self.rx.payload)
                    m.next = "READ"
            with m.State("READ"):
                with m.If(addr[6:] != 0):
                    m.d.sync += flags[FLAGS["BAD_COMMAND"]].eq(1)
                    reply(_BAD, 1)
                with m.Else():
                    m.d.comb += self.csr_r_en.eq(1)
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                reply(_R | (self.csr_r_data << 8), 5)
            with m.State("I_COUNT"):
                arguments()
                with m.If(self.rx.valid):
                    m.d.sync += [left.eq((self.rx.payload << 8) | (left >> 8)), got.eq(got + 1)]
                    with m.If(got == 1):
                        m.next = "I_CHECK"
            with m.State("I_CHECK"):
                with m.If(left == 0):
                    m.d.sync += flags[FLAGS["BAD_COMMAND"]].eq(1)
                    reply(_BAD, 1)
                with m.Else():
                    m.next = "CODES"
            with m.State("CODES"):
                m.d.comb += [self.codes.valid.eq(self.rx.valid), self.codes.payload.data.eq(self.rx.payload),
                             self.codes.payload.last.eq(left == 1), self.rx.ready.eq(self.codes.ready)]
                with m.If(self.rx.valid):
                    m.d.sync += idle_for.eq(0)
                    with m.If(self.codes.ready):
                        m.d.sync += left.eq(left - 1)
                        with m.If(left == 1):
                            reply(_I, 1)
                with m.Elif(idle_for == self._timeout - 1):
                    m.d.sync += [idle_for.eq(0), flags[FLAGS["TIMEOUT"]].eq(1)]
                    m.next = "CMD"
                with m.Else():
                    m.d.sync += idle_for.eq(idle_for + 1)
            with m.State("L_WAIT"):
                m.d.comb += self.logits.ready.eq(1)
                with m.If(self.logits.valid):
                    p = self.logits.payload
                    with m.If(p.last):
                        reply(p.data.as_unsigned() | (1 << 32), 5)
                    with m.Else():
                        reply(p.data.as_unsigned(), 5, "SEND_L")
                with m.Else():
                    m.d.comb += self.rx.ready.eq(1)
                    with m.If(self.rx.valid):
                        m.next = "CMD"
            for name, then in (("SEND", "CMD"), ("SEND_L", "L_WAIT")):
                with m.State(name):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(out[:8])]
                    with m.If(self.tx.ready):
                        m.d.sync += [out.eq(out >> 8), out_n.eq(out_n - 1)]
                        with m.If(out_n == 1):
                            m.next = then
        m.d.comb += self.busy.eq(~fsm.ongoing("CMD"))
        return m
