"""A stand-in for the network accelerator with exactly its host interface (for the board tests).

It accepts one image of signed 8-bit codes on ``s_in`` (any length, ``last`` on the final
code) and answers ``n_logits`` logits on ``m_out``, ``logit[k] = (k + 1) * S + (-1)^k * X``
with ``S = sum(code_i)`` and ``X = sum(i * code_i)`` (:func:`ref_logits`). Registers (word
addresses): 0 ID (``ID``), 1 CTRL (write bit 1: clear IMAGES and CYCLES), 2 STATUS
(bit 0 busy, bit 1 done), 3 IMAGES, 4 CYCLES (of the last image, first code to last logit),
5 SCRATCH (read/write); other addresses read 0.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

ID = 0xA5D0B0A2
REGS = {"ID": 0, "CTRL": 1, "STATUS": 2, "IMAGES": 3, "CYCLES": 4, "SCRATCH": 5}


def ref_logits(codes, n_logits=10):
    s = sum(codes)
    x = sum(i * c for i, c in enumerate(codes))
    return [(((k + 1) * s + (x if k % 2 == 0 else -x) + (1 << 31)) % (1 << 32)) - (1 << 31)
            for k in range(n_logits)]


class DoubleAccelerator(wiring.Component):
    def __init__(self, n_logits=10):
        self.n_logits = n_logits
        super().__init__({
            "s_in": In(stream.Signature(data.StructLayout({"data": 8, "last": 1}))),
            "m_out": Out(stream.Signature(data.StructLayout({"data": signed(32), "last": 1}))),
            "csr_addr": In(6), "csr_w_en": In(1), "csr_w_data": In(32), "csr_r_en": In(1),
            "csr_r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        s = Signal(signed(32))
        x = Signal(signed(32))
        i = Signal(16)
        k = Signal(range(self.n_logits + 1))
        busy, done = Signal(), Signal()
        images, cycles, scratch = Signal(32), Signal(32), Signal(32)
        code = self.s_in.payload.data.as_signed()
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.FSM():
            with m.State("IN"):
                m.d.comb += self.s_in.ready.eq(1)
                with m.If(self.s_in.valid):
                    with m.If(~busy):
                        m.d.sync += [cycles.eq(1), busy.eq(1), done.eq(0)]
                    m.d.sync += [s.eq(s + code), x.eq(x + i * code), i.eq(i + 1)]
                    with m.If(self.s_in.payload.last):
                        m.d.sync += k.eq(0)
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [self.m_out.valid.eq(1), self.m_out.payload.last.eq(k == self.n_logits - 1)]
                with m.If(k[0]):
                    m.d.comb += self.m_out.payload.data.eq((k + 1) * s - x)
                with m.Else():
                    m.d.comb += self.m_out.payload.data.eq((k + 1) * s + x)
                with m.If(self.m_out.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == self.n_logits - 1):
                        m.d.sync += [s.eq(0), x.eq(0), i.eq(0), busy.eq(0), done.eq(1), images.eq(images + 1)]
                        m.next = "IN"
        with m.If(self.csr_w_en):
            with m.Switch(self.csr_addr):
                with m.Case(REGS["CTRL"]):
                    with m.If(self.csr_w_data[1]):
                        m.d.sync += [images.eq(0), cycles.eq(0)]
                with m.Case(REGS["SCRATCH"]):
                    m.d.sync += scratch.eq(self.csr_w_data)
        with m.If(self.csr_r_en):
            m.d.sync += self.csr_r_data.eq(0)
            with m.Switch(self.csr_addr):
                with m.Case(REGS["ID"]):
                    m.d.sync += self.csr_r_data.eq(ID)
                with m.Case(REGS["STATUS"]):
                    m.d.sync += self.csr_r_data.eq(busy | (done << 1))
                with m.Case(REGS["IMAGES"]):
                    m.d.sync += self.csr_r_data.eq(images)
                with m.Case(REGS["CYCLES"]):
                    m.d.sync += self.csr_r_data.eq(cycles)
                with m.Case(REGS["SCRATCH"]):
                    m.d.sync += self.csr_r_data.eq(scratch)
        return m
