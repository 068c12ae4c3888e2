"""Address generation: the walk over output tiles of one channel.

A tile is ``lanes`` neighbouring outputs of one output row: image ``n``, row ``oy``,
columns ``tx*lanes .. tx*lanes + nv - 1``. Lane ``l`` of the tile reads activation
``base + offset + l`` for a term at ``offset``, where ``base = n*img_step + oy*row_step +
tx*lanes``: the host stores each padded input row split into ``stride`` phases
(``hdl.engine.program``), so the lanes of a tile always read consecutive addresses. Tiles go ``tx`` fastest, then
``oy``, then ``n``; ``nv = lanes`` except ``last_lanes`` in a row's last tile.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import COUNT_FIELD_BITS, EngineConfig

__all__ = ["TileWalker"]


class TileWalker(wiring.Component):
    """Tile counters and the activation base address of the current tile.

    Ports
    -----
    layer : In(layer layout)
    restart : In(1)
        Go to the first tile (a run starts).
    advance : In(1)
        Go to the next tile; after the channel's last tile, back to the first.
    base : Out(act_addr_bits)
    nv : Out(range(lanes + 1))
        Valid lanes of the current tile.
    last : Out(1)
        The current tile is the channel's last.
    """

    def __init__(self, ecfg: EngineConfig):
        self._e = ecfg
        super().__init__({
            "layer": In(ecfg.layer_layout()),
            "restart": In(1),
            "advance": In(1),
            "base": Out(unsigned(ecfg.act_addr_bits)),
            "nv": Out(range(ecfg.lanes + 1)),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        e, cfg = self._e, self.layer
        ab = e.act_addr_bits
        tx = Signal(COUNT_FIELD_BITS)
        oy = Signal(COUNT_FIELD_BITS)
        n = Signal(COUNT_FIELD_BITS)
        base = Signal(ab)
        row = Signal(ab)    # base of the current row's first tile
        img = Signal(ab)    # base of the current image
        last_x = Signal()
        last_y = Signal()
        last_n = Signal()
        m.d.comb += [
            last_x.eq(tx == cfg.tiles_x - 1),
            last_y.eq(oy == cfg.h_out - 1),
            last_n.eq(n == cfg.n_img - 1),
            self.base.eq(base),
            self.nv.eq(e.lanes),
            self.last.eq(last_x & last_y & last_n),
        ]
        with m.If(last_x):
            m.d.comb += self.nv.eq(cfg.last_lanes)
        step = e.lanes
        with m.If(self.restart):
            m.d.sync += [tx.eq(0), oy.eq(0), n.eq(0), base.eq(0), row.eq(0), img.eq(0)]
        with m.Elif(self.advance):
            with m.If(~last_x):
                m.d.sync += [tx.eq(tx + 1), base.eq(base + step)]
            with m.Elif(~last_y):
                m.d.sync += [tx.eq(0), oy.eq(oy + 1), row.eq(row + cfg.row_step),
                             base.eq(row + cfg.row_step)]
            with m.Elif(~last_n):
                m.d.sync += [tx.eq(0), oy.eq(0), n.eq(n + 1), img.eq(img + cfg.img_step),
                             row.eq(img + cfg.img_step), base.eq(img + cfg.img_step)]
            with m.Else():
                m.d.sync += [tx.eq(0), oy.eq(0), n.eq(0), base.eq(0), row.eq(0), img.eq(0)]
        return m
