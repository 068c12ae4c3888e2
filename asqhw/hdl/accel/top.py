"""``NetworkAccelerator``: the core behind two AXI-Stream-style ports and a register block.

Ports (docs/accelerator.md, "Host interface"):

- ``s_in``: input codes of one image, one signed 8-bit code per beat in ``[c][h][w]`` order,
  ``last`` on the final code;
- ``m_out``: the logits, one signed 16-bit value sign-extended to 32 bits per beat, ``last`` on
  the final one;
- ``csr_addr``/``csr_w_en``/``csr_w_data``/``csr_r_en``/``csr_r_data``: 32-bit registers of
  ``hdl.accel.regmap`` (read data valid the cycle after ``csr_r_en``);
- ``dbg_*``: observation strobes of the core for the co-simulation (leave unconnected).
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .program import AccelProgram
from .regmap import ID_MAGIC, VERSION, register
from .sequencer import DEBUG_PORTS, Core

__all__ = ["NetworkAccelerator", "LOGIT_BITS"]

LOGIT_BITS = 32


class NetworkAccelerator(wiring.Component):
    """The whole network of ``prog`` in hardware (docs/accelerator.md).

    Parameters
    ----------
    prog : AccelProgram
        ``hdl.accel.program.build(net, lanes)``: engine builds, ROM images, descriptors.
    """

    def __init__(self, prog: AccelProgram):
        if not isinstance(prog, AccelProgram):
            raise TypeError(f"prog must be an AccelProgram, not {prog!r}")
        self._p = prog
        members = {
            "s_in": In(stream.Signature(data.StructLayout({"data": 8, "last": 1}))),
            "m_out": Out(stream.Signature(data.StructLayout({"data": signed(LOGIT_BITS), "last": 1}))),
            "csr_addr": In(6), "csr_w_en": In(1), "csr_w_data": In(32), "csr_r_en": In(1),
            "csr_r_data": Out(32),
        }
        members |= {name: Out(w) for name, w in DEBUG_PORTS.items()}
        super().__init__(members)

    @property
    def program(self) -> AccelProgram:
        return self._p

    @property
    def logit_bits(self) -> int:
        """Width of ``m_out.data``: the spec's 16-bit logits (section 11), sign-extended."""
        return LOGIT_BITS

    def elaborate(self, platform):
        m = Module()
        p = self._p
        soft = Signal()
        core = Core(p)
        m.submodules.core = ResetInserter({"sync": soft})(core)
        wiring.connect(m, wiring.flipped(self.s_in), core.s_in)
        wiring.connect(m, core.m_out, wiring.flipped(self.m_out))
        for name in DEBUG_PORTS:
            m.d.comb += getattr(self, name).eq(getattr(core, name))

        auto = Signal(init=1)
        done_flag, err_flag = Signal(), Signal()
        wr = self.csr_w_en
        a = self.csr_addr
        ctrl, status = register("CTRL").addr, register("STATUS").addr
        with m.If(wr & (a == ctrl)):
            m.d.comb += [core.start.eq(self.csr_w_data[0]), soft.eq(self.csr_w_data[1])]
            m.d.sync += auto.eq(self.csr_w_data[2])
        m.d.comb += core.auto.eq(auto)
        with m.If(core.img_done):
            m.d.sync += done_flag.eq(1)
        with m.Elif(wr & (a == status) & self.csr_w_data[1]):
            m.d.sync += done_flag.eq(0)
        with m.If(core.frame_err):
            m.d.sync += err_flag.eq(1)
        with m.Elif(wr & (a == status) & self.csr_w_data[2]):
            m.d.sync += err_flag.eq(0)
        with m.If(soft):
            m.d.sync += [done_flag.eq(0), err_flag.eq(0)]

        values = {
            "ID": ID_MAGIC,
            "VERSION": VERSION[1] | VERSION[0] << 8 | 1 << 16 | 1 << 24,
            "CTRL": auto << 2,
            "STATUS": (core.busy | done_flag << 1 | err_flag << 2 | self.s_in.ready << 3
                       | self.m_out.valid << 4 | core.waiting << 5),
            "IMAGES": core.images,
            "CYCLES_LO": core.cycles[:32],
            "CYCLES_HI": core.cycles[32:],
            "IN_CODES": p.n_in,
            "OUT_LOGITS": p.classes,
            "PROGRAM": int(p.digest()[:8], 16),
            "STEPS": len(p.steps),
            "FRAME_ERRORS": core.frame_errors,
        }
        with m.If(self.csr_r_en):
            with m.Switch(a):
                for name, v in values.items():
                    with m.Case(register(name).addr):
                        m.d.sync += self.csr_r_data.eq(v)
                with m.Default():           # unmapped addresses read 0
                    m.d.sync += self.csr_r_data.eq(0)
        return m
