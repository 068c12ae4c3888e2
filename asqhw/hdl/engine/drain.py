"""The drain: shadow bank to output codes, one lane per cycle (docs/datapath.md section 6).

When the lane array captures a tile (``cap``), the drain reads the channel's
``M``/``B``/``sh`` from the channel memory (one cycle), then feeds lanes ``0 .. nv-1``
of the shadow bank, one per cycle, to the ``hdl.requant.Requantiser``; each code it
produces is written to the next address of the output buffer. A capture takes
``nv + 1`` cycles of the drain; the engine's FSM never captures sooner. The
requantiser has ``rq_pipeline`` register stages (``EngineConfig``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..requant import Requantiser
from .params import EngineConfig

__all__ = ["Drain"]


class Drain(wiring.Component):
    """Requantise a captured tile into the output buffer.

    Ports
    -----
    cap : In(1), cap_chan : In(chan_bits), cap_nv : In(range(lanes+1))
        A capture and its channel and valid lanes (valid with ``cap``).
    shadow : In(lanes * n_acc * acc_bits)
    p_addr : Out(chan_bits), p_data : In(param_bits)
        The channel memory's read port (synchronous).
    y, y_valid : Out
        The code to write to the output buffer, and its strobe.
    busy : Out(1)
        A capture is being drained (including the requantiser's pipeline).
    """

    def __init__(self, ecfg: EngineConfig):
        self._e = ecfg
        self.rq = Requantiser(n_acc=ecfg.n_acc, acc_bits=ecfg.acc_bits, out_bits=ecfg.out_bits,
                              out_signed=ecfg.out_signed, pipeline=ecfg.rq_pipeline)
        super().__init__({
            "cap": In(1),
            "cap_chan": In(unsigned(ecfg.chan_bits)),
            "cap_nv": In(range(ecfg.lanes + 1)),
            "shadow": In(unsigned(ecfg.lanes * ecfg.n_acc * ecfg.acc_bits)),
            "p_addr": Out(unsigned(ecfg.chan_bits)),
            "p_data": In(ecfg.param_layout()),
            "y": Out(ecfg.out_shape),
            "y_valid": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        e = self._e
        m.submodules.rq = rq = self.rq
        w = e.n_acc * e.acc_bits
        chan = Signal(unsigned(e.chan_bits))
        nv = Signal(range(e.lanes + 1))
        idx = Signal(range(max(e.lanes, 2)))
        run = Signal()
        words = Array(self.shadow[i * w:(i + 1) * w] for i in range(e.lanes))
        m.d.comb += self.p_addr.eq(chan)
        with m.If(self.cap):
            m.d.comb += self.p_addr.eq(self.cap_chan)
            m.d.sync += [chan.eq(self.cap_chan), nv.eq(self.cap_nv), idx.eq(0), run.eq(1)]
        with m.Elif(run):
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx == nv - 1):
                m.d.sync += run.eq(0)
        inflight = Signal()              # a lane is inside the requantiser's pipeline
        stages = [run]
        for i in range(e.rq_pipeline):
            nxt = Signal(name=f"rq_v{i + 1}")
            m.d.sync += nxt.eq(stages[-1])
            stages.append(nxt)
        m.d.comb += inflight.eq(Cat(*stages[1:]).any())
        m.d.comb += [
            rq.valid.eq(run),
            rq.acc.eq(words[idx] if e.lanes > 1 else words[0]),
            rq.m.eq(self.p_data.m),
            rq.b.eq(self.p_data.b),
            rq.sh.eq(self.p_data.sh),
            self.y.eq(rq.y),
            self.y_valid.eq(rq.y_valid),
            self.busy.eq(self.cap | run | inflight),
        ]
        return m
