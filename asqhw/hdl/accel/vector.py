"""The vector unit: one element of ``tmem`` per cycle through a window, a combiner and a requantiser.

Loops, outermost first: ``c < C``, ``oy < ho``, ``ph < PH``, ``q < Q``, ``ky < kh``, ``kx < kw``.
The element read is ``src[c][iy][ix]`` with ``iy = oy*sy + ky - pad`` and ``ix = q*sx + ph + kx
- pad``; outside ``[0, h) x [0, w)`` it is a padding element (not read; code 0, and not part of a
max window). One window (``kh x kw`` reads) makes one output:

- ``COPY``: the element; ``MAX``: the largest element of the window (spec section 12);
  ``SUM``: the exact sum of the window; ``ADD``: the elements of ``src_a`` and ``src_b`` at the
  same position (the two-input requant of section 12);
- then ``requant(t, M, B, sh)`` of section 6 (``hdl.requant.Requantiser``, two accumulators)
  and the clamp to ``[lo, hi]``.

A conv2d's activation image in the engine's layout (docs/engine.md) is the ``COPY`` walk with
``ho = H + 2 pad``, ``PH = stride``, ``Q = ceil((W + 2 pad) / stride)``, ``sx = stride``.

Timing: ``start`` in cycle ``s``; reads are issued in cycles ``s+1 .. s+N``; the output of the
window whose last read is issued in cycle ``t`` is on ``y`` in cycle ``t + 2``; ``done`` is high
in the cycle of the last output (``s + N + 2``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..requant import Requantiser

__all__ = ["VectorUnit", "WALK_FIELDS"]

#: Fields of the walk and the requantiser, with widths (the descriptor's).
WALK_FIELDS = (("vop", 2), ("src_a", 16), ("src_b", 16), ("c", 12), ("h", 12), ("w", 12), ("ho", 12),
               ("ph", 4), ("q", 12), ("kh", 4), ("kw", 4), ("sy", 4), ("sx", 4), ("pad", 4),
               ("hw", 24), ("syw", 16), ("padw", 16), ("m0", 16), ("m1", 16), ("sh", 6))
COPY, MAX, SUM, ADD = range(4)


class VectorUnit(wiring.Component):
    """Walk, combine and requantise one tensor of ``tmem`` (see the module docstring).

    Parameters
    ----------
    addr_bits : int
        Width of a ``tmem`` address.
    acc_bits : int
        Width of the combiner's sum (at least ``17 + bitlen(largest window)``).
    two_inputs : bool
        The requantiser has a second accumulator (``ADD``); without it ``ADD`` is not available.

    Ports
    -----
    start : In(1)
        Starts a walk with the configuration on the ``cfg_*`` ports (held while busy).
    rd_a_addr, rd_b_addr : Out(addr_bits); rd_a_data, rd_b_data : In(signed(16))
        Two synchronous read ports of ``tmem``.
    y_valid : Out(1), y : Out(signed(17))
        One output (already clamped to ``[lo, hi]``).
    done : Out(1)
        High in the cycle of the last output.
    busy : Out(1)
    """

    def __init__(self, *, addr_bits: int, acc_bits: int, two_inputs: bool = True):
        if not 17 <= acc_bits <= 40:
            raise ValueError(f"acc_bits must be in 17..40, not {acc_bits}")
        self.addr_bits, self.acc_bits, self.two_inputs = addr_bits, acc_bits, two_inputs
        members = {"start": In(1)}
        for name, width in WALK_FIELDS:
            members[f"cfg_{name}"] = In(width)
        members |= {"cfg_b": In(signed(48)), "cfg_lo": In(signed(17)), "cfg_hi": In(signed(17)),
                    "rd_a_addr": Out(addr_bits), "rd_b_addr": Out(addr_bits),
                    "rd_a_data": In(signed(16)), "rd_b_data": In(signed(16)),
                    "y_valid": Out(1), "y": Out(signed(17)), "done": Out(1), "busy": Out(1)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = {name: getattr(self, f"cfg_{name}") for name, _ in WALK_FIELDS}
        ab = self.addr_bits

        # --- walker -------------------------------------------------------------------------
        active = Signal()
        c, oy, ph, q, ky, kx = (Signal(12, name=n) for n in ("c", "oy", "ph_i", "q_i", "ky", "kx"))
        # no multiplier: the host gives h*w, sy*w and pad*w; the row offsets are running sums
        cbase = Signal(ab + 1)           # c * h * w
        oyb = Signal(16)                 # oy * sy
        oyw = Signal(ab + 1)             # oy * sy * w
        kyw = Signal(ab + 1)             # ky * w
        qx = Signal(16)                  # q * sx + ph
        iy = Signal(signed(18))
        ix = Signal(signed(18))
        m.d.comb += [iy.eq(oyb + ky - cfg["pad"]), ix.eq(qx + kx - cfg["pad"])]
        inb = Signal()
        m.d.comb += inb.eq((iy >= 0) & (iy < cfg["h"]) & (ix >= 0) & (ix < cfg["w"]))
        off = Signal(ab + 1)
        m.d.comb += off.eq(cbase + oyw + kyw - cfg["padw"] + ix[:16])     # c*h*w + iy*w + ix
        m.d.comb += [self.rd_a_addr.eq(cfg["src_a"] + off), self.rd_b_addr.eq(cfg["src_b"] + off)]
        l_kx, l_ky = kx == cfg["kw"] - 1, ky == cfg["kh"] - 1
        l_q, l_ph = q == cfg["q"] - 1, ph == cfg["ph"] - 1
        l_oy, l_c = oy == cfg["ho"] - 1, c == cfg["c"] - 1
        first = (kx == 0) & (ky == 0)
        last = l_kx & l_ky
        end = last & l_q & l_ph & l_oy & l_c

        with m.If(self.start):
            m.d.sync += [active.eq(1), c.eq(0), oy.eq(0), ph.eq(0), q.eq(0), ky.eq(0), kx.eq(0),
                         cbase.eq(0), oyb.eq(0), oyw.eq(0), kyw.eq(0), qx.eq(0)]
        with m.Elif(active):
            with m.If(~l_kx):
                m.d.sync += kx.eq(kx + 1)
            with m.Else():
                m.d.sync += kx.eq(0)
                with m.If(~l_ky):
                    m.d.sync += [ky.eq(ky + 1), kyw.eq(kyw + cfg["w"])]
                with m.Else():
                    m.d.sync += [ky.eq(0), kyw.eq(0)]
                    with m.If(~l_q):
                        m.d.sync += [q.eq(q + 1), qx.eq(qx + cfg["sx"])]
                    with m.Else():
                        m.d.sync += q.eq(0)
                        with m.If(~l_ph):
                            m.d.sync += [ph.eq(ph + 1), qx.eq(ph + 1)]
                        with m.Else():
                            m.d.sync += [ph.eq(0), qx.eq(0)]
                            with m.If(~l_oy):
                                m.d.sync += [oy.eq(oy + 1), oyb.eq(oyb + cfg["sy"]), oyw.eq(oyw + cfg["syw"])]
                            with m.Else():
                                m.d.sync += [oy.eq(0), oyb.eq(0), oyw.eq(0), c.eq(c + 1),
                                             cbase.eq(cbase + cfg["hw"])]
                                with m.If(l_c):
                                    m.d.sync += active.eq(0)

        # --- stage 1: data, combiner -------------------------------------------------------
        v1, inb1, first1, last1, end1 = (Signal(name=n) for n in ("v1", "inb1", "first1", "last1", "end1"))
        m.d.sync += [v1.eq(active), inb1.eq(inb), first1.eq(first), last1.eq(last), end1.eq(active & end)]
        acc = Signal(signed(self.acc_bits))
        cur0 = Signal(signed(self.acc_bits))
        cur1 = Signal(signed(self.acc_bits))
        xa = Signal(signed(17))
        m.d.comb += xa.eq(Mux(inb1, self.rd_a_data, 0))
        with m.Switch(cfg["vop"]):
            with m.Case(COPY):
                m.d.comb += cur0.eq(xa)
            with m.Case(MAX):
                lowest = Const(-(1 << 15), signed(17))
                m.d.comb += cur0.eq(Mux(first1, Mux(inb1, xa, lowest),
                                        Mux(inb1 & (xa > acc), xa, acc)))
            with m.Case(SUM):
                m.d.comb += cur0.eq(Mux(first1, 0, acc) + xa)
            with m.Default():
                m.d.comb += [cur0.eq(xa), cur1.eq(Mux(inb1, self.rd_b_data, 0))]
        with m.If(v1):
            m.d.sync += acc.eq(cur0)

        # --- stage 2: requantiser (one register), clamp ----------------------------------------
        ab2 = self.acc_bits
        n_acc = 2 if self.two_inputs else 1
        rq = Requantiser(n_acc=n_acc, acc_bits=ab2, out_bits=16, out_signed=True, pipeline=1)
        m.submodules.rq = rq
        m.d.comb += [rq.valid.eq(v1 & last1), rq.b.eq(self.cfg_b), rq.sh.eq(cfg["sh"])]
        if self.two_inputs:
            m.d.comb += [rq.acc.eq(Cat(cur0, cur1)), rq.m.eq(Cat(cfg["m0"], cfg["m1"]))]
        else:
            m.d.comb += [rq.acc.eq(cur0), rq.m.eq(cfg["m0"])]
        end2 = Signal()
        m.d.sync += end2.eq(v1 & end1)
        y = rq.y
        m.d.comb += [
            self.y.eq(Mux(y < self.cfg_lo, self.cfg_lo, Mux(y > self.cfg_hi, self.cfg_hi, y))),
            self.y_valid.eq(rq.y_valid),
            self.done.eq(end2),
            self.busy.eq(active | v1 | end2),
        ]
        return m
