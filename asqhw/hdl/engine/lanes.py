"""The lane array: ``lanes`` accumulating lanes that share one weight term per cycle.

Each lane owns one output position of the tile. Per term, lane ``l`` receives its own
activation code ``A_l`` and the broadcast weight payload:

- ``any``: the product lane of ``dp.arch`` (``hdl.lanes``: multiplier, barrel shifter,
  Eq. 18 table or split shifter) gives ``P`` (and ``k`` for split);
  ``acc_k <= (first ? 0 : acc_k) + P`` for the lane's ``k``.
- ``grouped``: the lane only negates (``hdl.lanes.SignLane``): ``P = neg(A)``, or 0 for
  a ``zero`` entry; ``acc_k <= (first ? 0 : (dbl ? 2*acc_k : acc_k)) + P`` for the
  entry's ``k``, and every accumulator doubles on ``dbl`` (Horner over shift levels).
- ``grouped1`` (post split): one accumulator per lane, ``acc <= (start ? 0 : (dbl ?
  2*acc : acc)) + P``; an entry with ``park`` also copies the new value into the lane's
  park register, and ``start`` is ``first`` or "the previous entry parked" (one
  broadcast flip-flop), so the even-exponent terms that follow begin from 0. On ``last``
  the shadow bank takes ``acc_0 = `` the new value and ``acc_1 = `` the park register.

All sums wrap modulo ``2^acc_bits`` (docs/datapath.md section 5). On the ``last`` term
of a tile the new values are also copied into the shadow bank, which the drain reads
while the next tile accumulates; ``cap`` is high in the cycle after the copy.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..lanes import SignLane, make_lane
from .params import EngineConfig

__all__ = ["LaneArray"]


class LaneArray(wiring.Component):
    """Lanes, accumulators and the shadow bank.

    Ports
    -----
    valid, first, last : In(1)
        A term; ``first`` starts a tile, ``last`` ends it.
    payload : In(payload_bits)
        The term entry's payload (``EngineConfig.payload_bits``).
    a : In(lanes * b_a)
        Activation code of lane ``l`` at bits ``[l*b_a, (l+1)*b_a)``.
    shadow : Out(lanes * n_acc * acc_bits)
        Accumulator ``k`` of lane ``l`` at bits ``[(l*n_acc + k)*acc_bits, ...)``.
    cap : Out(1)
        The shadow bank was loaded at the last clock edge.
    """

    def __init__(self, ecfg: EngineConfig):
        self._e = ecfg
        n = ecfg.lanes * ecfg.n_acc * ecfg.acc_bits
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "payload": In(unsigned(ecfg.payload_bits)),
            "a": In(unsigned(ecfg.lanes * ecfg.dp.a_bits)),
            "shadow": Out(unsigned(n)),
            "cap": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        e = self._e
        dp, ab, nb = e.dp, e.dp.a_bits, e.acc_bits
        shadows = []
        if e.grouped:
            neg, zero, dbl = self.payload[0], self.payload[1], self.payload[2]
            ksel = self.payload[3] if e.dp.arch == "split" else None
        if e.one_acc:
            return self._elaborate_one_acc(m, neg, zero, dbl, self.payload[3])
        for i in range(e.lanes):
            a_i = self.a[i * ab:(i + 1) * ab]
            accs = [Signal(signed(nb), name=f"acc{i}_{k}", reset_less=True) for k in range(e.n_acc)]
            if e.grouped:
                lane = SignLane(dp)
                m.submodules[f"lane{i}"] = lane
                m.d.comb += [lane.a.eq(a_i), lane.neg.eq(neg)]
                p = Signal(signed(lane.width), name=f"p{i}")
                m.d.comb += p.eq(Mux(zero, 0, lane.p))
                ks = [None] if ksel is None else [~ksel, ksel]
            else:
                lane = make_lane(dp)
                m.submodules[f"lane{i}"] = lane
                m.d.comb += [lane.a.eq(a_i), lane.w.eq(self.payload)]
                p = lane.p
                ks = [None] if dp.arch != "split" else [~lane.k, lane.k]
            news = []
            for k, acc in enumerate(accs):
                new = Signal(signed(nb), name=f"new{i}_{k}")
                if e.grouped:
                    kept = Mux(dbl, acc << 1, acc)
                else:
                    kept = acc
                base = Mux(self.first, 0, kept)
                add = p if ks[k] is None else Mux(ks[k], p, 0)
                m.d.comb += new.eq(base + add)
                with m.If(self.valid):
                    m.d.sync += acc.eq(new)
                news.append(new)
            sh = [Signal(signed(nb), name=f"shadow{i}_{k}", reset_less=True) for k in range(e.n_acc)]
            with m.If(self.valid & self.last):
                m.d.sync += [s.eq(v) for s, v in zip(sh, news)]
            shadows += sh
        cap = Signal()
        m.d.sync += cap.eq(self.valid & self.last)
        m.d.comb += [self.shadow.eq(Cat(*shadows)), self.cap.eq(cap)]
        return m

    def _elaborate_one_acc(self, m, neg, zero, dbl, park):
        """``grouped1``: one accumulator and a park register per lane (see the module docstring)."""
        e = self._e
        ab, nb = e.dp.a_bits, e.acc_bits
        parked = Signal()           # the last valid entry had park: the next one starts from 0
        with m.If(self.valid):
            m.d.sync += parked.eq(park)
        restart = Signal()
        m.d.comb += restart.eq(self.first | parked)
        shadows = []
        for i in range(e.lanes):
            lane = SignLane(e.dp)
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [lane.a.eq(self.a[i * ab:(i + 1) * ab]), lane.neg.eq(neg)]
            p = Signal(signed(lane.width), name=f"p{i}")
            m.d.comb += p.eq(Mux(zero, 0, lane.p))
            acc = Signal(signed(nb), name=f"acc{i}", reset_less=True)
            hold = Signal(signed(nb), name=f"park{i}", reset_less=True)
            new = Signal(signed(nb), name=f"new{i}")
            m.d.comb += new.eq(Mux(restart, 0, Mux(dbl, acc << 1, acc)) + p)
            with m.If(self.valid):
                m.d.sync += acc.eq(new)
            with m.If(self.valid & park):
                m.d.sync += hold.eq(new)
            sh = [Signal(signed(nb), name=f"shadow{i}_{k}", reset_less=True) for k in range(2)]
            with m.If(self.valid & self.last):
                m.d.sync += [sh[0].eq(new), sh[1].eq(hold)]
            shadows += sh
        cap = Signal()
        m.d.sync += cap.eq(self.valid & self.last)
        m.d.comb += [self.shadow.eq(Cat(*shadows)), self.cap.eq(cap)]
        return m
