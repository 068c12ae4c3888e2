"""Stream loaders: an ``amaranth.lib.stream`` input that fills a memory from address 0."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamLoader"]


class StreamLoader(wiring.Component):
    """Writes each accepted payload to the next address of a memory write port.

    Ports
    -----
    s : In(stream.Signature(width))
        ``ready`` is ``~hold``: the engine refuses loads while it runs.
    hold : In(1)
    clear : In(1)
        Restart at address 0 (the engine pulses it when a run ends).
    addr, data, en : Out
        To the memory's write port.
    """

    def __init__(self, width: int, depth: int):
        self._depth = depth
        super().__init__({
            "s": In(stream.Signature(unsigned(width))),
            "hold": In(1),
            "clear": In(1),
            "addr": Out(range(max(depth, 2))),
            "data": Out(unsigned(width)),
            "en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ptr = Signal(range(max(self._depth, 2)), name="ptr")
        take = Signal()
        m.d.comb += [
            self.s.ready.eq(~self.hold),
            take.eq(self.s.valid & ~self.hold),
            self.addr.eq(ptr),
            self.data.eq(self.s.payload),
            self.en.eq(take),
        ]
        with m.If(self.clear):
            m.d.sync += ptr.eq(0)
        with m.Elif(take):
            m.d.sync += ptr.eq(ptr + 1)
        return m
