"""DotRequant: a dot-product unit followed by the requantiser."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.params import Datapath

from .requant import B_BITS, M_BITS, MAX_PIPELINE, SH_BITS, Requantiser

__all__ = ["DotRequant"]


class DotRequant(wiring.Component):
    """:class:`hdl.dot.DotUnit` whose accumulators feed a :class:`Requantiser`.

    Parameters
    ----------
    dp : Datapath
    lanes, acc_bits, schedule, pipeline :
        As for ``DotUnit``; ``pipeline`` also sets the requantiser's register
        stages (capped at 3).
    out_bits : int
    out_signed : bool

    Ports
    -----
    The ports of ``DotUnit`` (``valid``, ``first``, ``last``, ``a``, ``w`` or
    ``neg``/``exp``, ``acc``, ``out_valid``), plus ``m`` (n_acc x 16), ``b``
    (signed 48) and ``sh`` (6) in, which must be held for the whole dot product
    and are sampled with the ``last`` beat, and ``y``, ``y_valid`` out.
    ``y_valid`` is high ``latency`` cycles after the edge that samples ``last``.
    """

    def __init__(self, dp: Datapath, *, lanes: int, acc_bits: int, out_bits: int,
                 out_signed: bool, schedule: str = "any", pipeline: int = 1):
        from .dot import DotUnit  # written by the hdl-dot helper

        if not isinstance(dp, Datapath):
            raise TypeError(f"dp must be a Datapath, not {dp!r}")
        self._dp = dp
        self.dot = DotUnit(dp, lanes=lanes, acc_bits=acc_bits, schedule=schedule, pipeline=pipeline)
        self.rq = Requantiser(n_acc=dp.n_acc, acc_bits=acc_bits, out_bits=out_bits,
                              out_signed=out_signed, pipeline=min(pipeline, MAX_PIPELINE))
        members = {}
        for name, member in self.dot.signature.members.items():
            members[name] = member
        members.update({
            "m": In(unsigned(dp.n_acc * M_BITS)),
            "b": In(signed(B_BITS)),
            "sh": In(unsigned(SH_BITS)),
            "y": Out(self.rq.y.shape()),
            "y_valid": Out(1),
        })
        super().__init__(members)

    @property
    def dot_latency(self) -> int:
        """Cycles from the edge sampling ``last`` to ``out_valid``."""
        return self.dot.latency

    @property
    def latency(self) -> int:
        """Cycles from the edge sampling ``last`` to ``y_valid``."""
        return self.dot.latency + self.rq.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.dot = dot = self.dot
        m.submodules.rq = rq = self.rq
        for name in self.dot.signature.members:
            port, inner = getattr(self, name), getattr(dot, name)
            if self.dot.signature.members[name].flow == In:
                m.d.comb += inner.eq(port)
            else:
                m.d.comb += port.eq(inner)

        # m, b, sh travel alongside the dot product: a delay line of dot.latency
        # stages, so back-to-back dot products each meet their own channel's values.
        params = Signal(unsigned(len(self.m) + B_BITS + SH_BITS), name="params")
        m.d.comb += params.eq(Cat(self.m, self.b, self.sh))
        for i in range(self.dot.latency):
            nxt = Signal.like(params, name=f"params_d{i + 1}")
            m.d.sync += nxt.eq(params)
            params = nxt
        nm = len(self.m)
        m.d.comb += [
            rq.valid.eq(dot.out_valid),
            rq.acc.eq(dot.acc),
            rq.m.eq(params[:nm]),
            rq.b.eq(params[nm:nm + B_BITS]),
            rq.sh.eq(params[nm + B_BITS:]),
            self.y.eq(rq.y),
            self.y_valid.eq(rq.y_valid),
        ]
        return m
