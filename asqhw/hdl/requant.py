"""Requantiser: accumulators to output codes (docs/datapath.md section 6).

``t = sum_k M[k] * acc[k] + B``, then ``r = floor(t / 2^sh + 1/2)`` (round half
toward plus infinity, ``TIES_POS``), then ``y = min(max(r, lo), hi)``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.validate import check_bool, check_int

__all__ = ["Requantiser", "M_BITS", "B_BITS", "SH_BITS", "SH_MAX", "MAX_PIPELINE"]

M_BITS = 16
B_BITS = 48
SH_BITS = 6
SH_MAX = 62
MAX_PIPELINE = 3


class Requantiser(wiring.Component):
    """Multiply-add, rounding shift and clamp of docs/datapath.md section 6.

    Parameters
    ----------
    n_acc : int
        Number of accumulators (1, or 2 for post ``split``).
    acc_bits : int
        Width of each two's complement accumulator, 2..40.
    out_bits : int
        Output code width, 2..16.
    out_signed : bool
        Signed output range ``[-2^(b-1), 2^(b-1)-1]``; else ``[0, 2^b-1]`` (fused ReLU).
    pipeline : int
        Register stages, 0..3: 0 is combinational, 1 registers ``y``, 2 also
        registers ``t``, 3 also registers the products.

    Ports
    -----
    valid : In(1)
    acc : In(n_acc * acc_bits)
        Accumulator ``k`` at bits ``[k*acc_bits, (k+1)*acc_bits)``, two's complement.
    m : In(n_acc * 16)
        Unsigned multiplier ``M[k]`` at bits ``[16k, 16k+16)``.
    b : In(signed(48))
    sh : In(6)
        Right shift, 0..62 (63 is outside the spec; the hardware shifts by 63).
    y : Out(out_bits)
        Two's complement if ``out_signed``.
    y_valid : Out(1)
        ``valid`` delayed by ``latency`` cycles.
    """

    def __init__(self, *, n_acc: int, acc_bits: int, out_bits: int, out_signed: bool,
                 pipeline: int = 1):
        check_int("n_acc", n_acc, 1, 2)
        check_int("acc_bits", acc_bits, 2, 40)
        check_bool("out_signed", out_signed)
        check_int("out_bits", out_bits, 2, 16 if out_signed else 15)
        check_int("pipeline", pipeline, 0, MAX_PIPELINE)
        self._n_acc = n_acc
        self._acc_bits = acc_bits
        self._out_bits = out_bits
        self._out_signed = out_signed
        self._pipeline = pipeline
        super().__init__({
            "valid": In(1),
            "acc": In(unsigned(n_acc * acc_bits)),
            "m": In(unsigned(n_acc * M_BITS)),
            "b": In(signed(B_BITS)),
            "sh": In(unsigned(SH_BITS)),
            "y": Out(signed(out_bits) if out_signed else unsigned(out_bits)),
            "y_valid": Out(1),
        })

    @property
    def n_acc(self) -> int:
        """Number of accumulators."""
        return self._n_acc

    @property
    def acc_bits(self) -> int:
        """Accumulator width."""
        return self._acc_bits

    @property
    def out_bits(self) -> int:
        """Output code width."""
        return self._out_bits

    @property
    def out_signed(self) -> bool:
        """Whether output codes are signed."""
        return self._out_signed

    @property
    def pipeline(self) -> int:
        """Number of register stages."""
        return self._pipeline

    @property
    def latency(self) -> int:
        """Cycles from the edge that samples ``valid`` to the cycle ``y_valid`` is high."""
        return self._pipeline

    @property
    def out_range(self) -> tuple[int, int]:
        """Inclusive output range ``(lo, hi)``."""
        if self._out_signed:
            return -(1 << (self._out_bits - 1)), (1 << (self._out_bits - 1)) - 1
        return 0, (1 << self._out_bits) - 1

    @property
    def t_bits(self) -> int:
        """Signed width that holds ``t`` exactly."""
        prod = self._acc_bits + M_BITS + 1
        return max(prod + self._n_acc - 1, B_BITS) + 1

    def elaborate(self, platform):
        m = Module()
        n, ab, tb = self._n_acc, self._acc_bits, self.t_bits
        stage = [False] * 4  # stage[i]: register after step i (1 products, 2 t, 3 y)
        for i in range(self._pipeline):
            stage[3 - i] = True

        def step(name, shape, value, registered):
            sig = Signal(shape, name=name)
            if registered:
                m.d.sync += sig.eq(value)
            else:
                m.d.comb += sig.eq(value)
            return sig

        # step 1: products M[k] * acc[k] (signed x unsigned, exact), bias passed along
        prods = []
        for k in range(n):
            acc_k = self.acc[k * ab:(k + 1) * ab].as_signed()
            m_k = self.m[k * M_BITS:(k + 1) * M_BITS]
            prods.append(step(f"prod{k}", signed(ab + M_BITS + 1), acc_k * m_k, stage[1]))
        b1 = step("b1", signed(B_BITS), self.b, stage[1])
        sh1 = step("sh1", unsigned(SH_BITS), self.sh, stage[1])
        v1 = step("v1", 1, self.valid, stage[1])

        # step 2: t = sum + B
        total = b1
        for p in prods:
            total = total + p
        t = step("t", signed(tb), total, stage[2])
        sh2 = step("sh2", unsigned(SH_BITS), sh1, stage[2])
        v2 = step("v2", 1, v1, stage[2])

        # step 3: r = ((2t >> sh) + 1) >> 1 == floor(t / 2^sh + 1/2) for every sh >= 0,
        # then clamp to [lo, hi]
        half = Signal(signed(tb + 1), name="half")
        m.d.comb += half.eq((t << 1) >> sh2)
        r = Signal(signed(tb), name="r")
        m.d.comb += r.eq((half + 1) >> 1)
        lo, hi = self.out_range
        clamped = Mux(r < lo, lo, Mux(r > hi, hi, r[:self._out_bits]))
        m.d.comb += self.y.eq(step("y_r", self.y.shape(), clamped, stage[3]))
        m.d.comb += self.y_valid.eq(step("v3", 1, v2, stage[3]))
        return m
