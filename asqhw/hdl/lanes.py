"""Product lanes: one activation code times one weight code (docs/datapath.md section 4).

Every lane maps an activation code ``A`` (port ``a``) and a weight code (port
``w``, exactly as stored in the vector files) to the spec's product ``P`` and,
for ``split``, the accumulator index ``k``. The sign of a pot/post weight is
applied as ``x = mag XOR sgn`` plus a carry ``c = sgn`` (section 9): ``P = x + c``.
The dot unit adds ``x`` in its adder tree and feeds ``c`` into a carry input, so
no lane needs its own negation adder; ``p`` is ``x + c`` for tests and for
single-lane use (synthesis removes it when unused).

| class | arch | product |
|---|---|---|
| ``MulLane`` | ``mul`` | ``A * q`` (a real multiplier) |
| ``ShiftLane`` | ``shift`` | ``neg(A << (E_max - W))`` |
| ``LutLane`` | ``lut`` | ``neg(A << (F - W/2))`` for even ``W``, ``neg(LUT[W][A])`` for odd ``W`` |
| ``SplitLane`` | ``split`` | ``neg(A << (S - floor(W/2)))``, ``k = W mod 2`` |
| ``SignLane`` | grouped pot/post | ``neg(A)`` (the shift comes after the adder tree) |
"""

from __future__ import annotations

from math import isqrt

from amaranth.hdl import Array, C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.params import Datapath

__all__ = [
    "product_bits",
    "lut_table",
    "MulLane",
    "ShiftLane",
    "LutLane",
    "SplitLane",
    "SignLane",
    "make_lane",
]


def _check_dp(dp):
    if not isinstance(dp, Datapath):
        raise TypeError(f"dp must be an asqhw.core.params.Datapath, not {dp!r}")


def product_bits(dp: Datapath) -> int:
    """Width of the two's complement product ``P`` of one lane: ``bitlen(p_max) + 1``."""
    _check_dp(dp)
    return dp.p_max.bit_length() + 1


def _code_value(dp, u):
    """Activation code of the raw ``b_a``-bit pattern ``u``."""
    if dp.a_signed and u >= 1 << (dp.a_bits - 1):
        return u - (1 << dp.a_bits)
    return u


def lut_table(dp: Datapath) -> dict[int, tuple[int, ...]]:
    """The ``lut`` table of Eq. 18: ``{W: row}`` for every odd ``W <= E_max``.

    ``row[u]`` is ``LUT[W][A]`` for the activation code ``A`` whose raw ``b_a``-bit
    pattern is ``u``: ``sgn(A) * ((isqrt(A^2 * 2^(2F - W + 2)) + 1) >> 1)``.
    """
    _check_dp(dp)
    if dp.arch != "lut":
        raise ValueError(f"lut_table needs arch 'lut', not {dp.arch!r}")
    f = dp.frac_bits
    table = {}
    for w in range(1, dp.e_max + 1, 2):
        row = []
        for u in range(1 << dp.a_bits):
            a = _code_value(dp, u)
            mag = (isqrt(a * a << (2 * f - w + 2)) + 1) >> 1
            row.append(-mag if a < 0 else mag)
        table[w] = tuple(row)
    return table


class _Lane(wiring.Component):
    """Common ports: in ``a`` (b_a bits), in ``w`` (storage bits); out ``p``, ``x``, ``c``."""

    def __init__(self, dp: Datapath, *, archs: tuple[str, ...], split: bool = False):
        try:
            _check_dp(dp)
            if dp.arch not in archs:
                raise ValueError(f"{type(self).__name__} implements arch {'/'.join(archs)}, not {dp.arch!r}")
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a rejected lane is not an unused one
            raise
        self._dp = dp
        width = product_bits(dp)
        members = {
            "a": In(unsigned(dp.a_bits)),
            "w": In(unsigned(dp.storage_bits)),
            "p": Out(signed(width)),
            "x": Out(signed(width)),
            "c": Out(1),
        }
        if split:
            members["k"] = Out(1)
        super().__init__(members)

    @property
    def dp(self) -> Datapath:
        """The datapath configuration."""
        return self._dp

    @property
    def width(self) -> int:
        """Width of ``p`` and ``x``."""
        return product_bits(self._dp)

    def _a_value(self):
        return self.a.as_signed() if self._dp.a_signed else self.a

    def _decode(self, m):
        """Magnitude index ``m``, zero flag and effective sign of the weight code."""
        dp = self._dp
        mag = Signal(unsigned(dp.m_bits), name="m_idx")
        zero = Signal(name="w_zero")
        neg = Signal(name="w_neg")
        m.d.comb += [
            mag.eq(self.w[: dp.m_bits]),
            zero.eq(mag == 0),
            neg.eq(self.w[dp.m_bits] & ~zero),
        ]
        return mag, zero, neg

    def _signed_out(self, m, value, neg):
        """Drive ``x = value XOR neg``, ``c = neg`` and ``p = x + c``."""
        width = self.width
        v = Signal(signed(width), name="mag")
        m.d.comb += [
            v.eq(value),
            self.x.eq(v ^ neg.replicate(width)),
            self.c.eq(neg),
            self.p.eq(self.x + self.c),
        ]


class MulLane(_Lane):
    """``uniform`` ``mul``: ``P = A * q`` with ``q`` the two's complement weight code."""

    def __init__(self, dp: Datapath):
        super().__init__(dp, archs=("mul",))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.x.eq(self._a_value() * self.w.as_signed()),
            self.c.eq(0),
            self.p.eq(self.x),
        ]
        return m


class ShiftLane(_Lane):
    """``pot`` ``shift``: ``P = neg(A << (E_max - W))``, one barrel shifter per lane."""

    def __init__(self, dp: Datapath):
        super().__init__(dp, archs=("shift",))

    def elaborate(self, platform):
        m = Module()
        dp = self._dp
        idx, zero, neg = self._decode(m)
        sh = Signal(range(dp.e_max + 1), name="sh")
        m.d.comb += sh.eq(dp.e_max + 1 - idx)
        self._signed_out(m, Mux(zero, 0, self._a_value() << sh), neg)
        return m


class LutLane(_Lane):
    """``post`` ``lut`` (Eq. 18): a shift for even ``W``, the table of ``lut_table`` for odd ``W``."""

    def __init__(self, dp: Datapath):
        super().__init__(dp, archs=("lut",))

    def elaborate(self, platform):
        m = Module()
        dp = self._dp
        idx, zero, neg = self._decode(m)
        a = self._a_value()
        width = self.width
        value = Signal(signed(width), name="lut_value")
        rows = lut_table(dp)
        with m.Switch(idx):
            for w in range(dp.e_max + 1):
                with m.Case(w + 1):
                    if w % 2 == 0:
                        m.d.comb += value.eq(a << (dp.frac_bits - w // 2))
                    else:
                        row = Array(C(v, signed(width)) for v in rows[w])
                        m.d.comb += value.eq(row[self.a])
            with m.Default():
                m.d.comb += value.eq(0)
        self._signed_out(m, value, neg)
        return m


class SplitLane(_Lane):
    """``post`` ``split``: ``P = neg(A << (S - floor(W/2)))`` into accumulator ``k = W mod 2``."""

    def __init__(self, dp: Datapath):
        super().__init__(dp, archs=("split",), split=True)

    def elaborate(self, platform):
        m = Module()
        dp = self._dp
        s = dp.frac_bits
        idx, zero, neg = self._decode(m)
        w = Signal(unsigned(dp.m_bits), name="w_exp")
        sh = Signal(range(s + 1), name="sh")
        m.d.comb += [
            w.eq(idx - 1),
            sh.eq(s - (w >> 1)),
            self.k.eq(w[0] & ~zero),
        ]
        self._signed_out(m, Mux(zero, 0, self._a_value() << sh), neg)
        return m


class SignLane(wiring.Component):
    """Lane of the ``grouped`` schedule: ``P = neg(A)``; the beat's shared shift comes later.

    Ports: in ``a`` (b_a bits), in ``neg`` (1); out ``x``, ``p`` (signed, b_a + 1 bits), ``c``
    with ``p = x + c = -A`` if ``neg`` else ``A``.
    """

    def __init__(self, dp: Datapath):
        _check_dp(dp)
        self._dp = dp
        width = dp.a_bits + 1
        super().__init__({
            "a": In(unsigned(dp.a_bits)),
            "neg": In(1),
            "p": Out(signed(width)),
            "x": Out(signed(width)),
            "c": Out(1),
        })

    @property
    def width(self) -> int:
        """Width of ``p`` and ``x``: ``b_a + 1``."""
        return self._dp.a_bits + 1

    def elaborate(self, platform):
        m = Module()
        a = self.a.as_signed() if self._dp.a_signed else self.a
        v = Signal(signed(self.width), name="a_ext")
        m.d.comb += [
            v.eq(a),
            self.x.eq(v ^ self.neg.replicate(self.width)),
            self.c.eq(self.neg),
            self.p.eq(self.x + self.c),
        ]
        return m


_LANES = {"mul": MulLane, "shift": ShiftLane, "lut": LutLane, "split": SplitLane}


def make_lane(dp: Datapath) -> _Lane:
    """The product lane of ``dp.arch`` (schedule ``any``)."""
    _check_dp(dp)
    return _LANES[dp.arch](dp)
