"""The accelerator core: tensor memory, engines, vector unit, adapter unit and the step sequencer.

States (docs/accelerator.md): ``RX`` receives an image into the input region of ``tmem``;
``WAIT`` holds it until ``start`` (or ``auto``) and an empty output FIFO; then per step
``FETCH`` (the descriptor ROM's read) and ``GO`` (starts the step's units), then

- ``LAYER``: ``L_LOAD`` (channel words and activations stream into the engine) ->
  ``L_RUN`` (engine started in the cycle the loads are idle; waits for ``done``) -> ``L_DRAIN``
  (one output per cycle into ``tmem``, the adapter tap and, for the output layer, the FIFO);
- ``VEC``: ``V_RUN`` until the vector unit's ``done``;
- ``ADAPTER``: ``A_LOAD`` (weights, requantiser words, multipliers stream in) -> ``A_RUN``
  (unit started in the cycle the loads are idle; waits for ``done``, keeps ``beta_q``, ``R``,
  ``sh`` in the adapter's slot; the ``M_n`` go to the ``mn`` RAM as they leave).

A step's last cycle is the one that sees its end condition; the next ``FETCH`` follows. The
cycle count is ``hdl.accel.cycles``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..engine.adapter_unit import Q_BITS, AdapterUnit
from ..engine.top import Engine
from .program import DESC_FIELDS, OPS, AccelProgram, desc_bits
from .vector import WALK_FIELDS, VectorUnit

__all__ = ["Core", "RomFeeder", "desc_layout", "DEBUG_PORTS", "PHASES"]

PHASES = {"go": 0, "engine_start": 1, "engine_done": 2, "adapter_start": 3, "adapter_done": 4, "end": 5}


def desc_layout() -> data.StructLayout:
    return data.StructLayout({n: (signed(w) if s else unsigned(w)) for n, w, s in DESC_FIELDS})


def _bitlen(v: int) -> int:
    return max(int(v).bit_length(), 1)


class RomFeeder(wiring.Component):
    """Streams ``count`` words of a ROM from ``base``: reads issued in cycles ``s+1 .. s+count``,
    each word valid on ``out`` one cycle later; ``busy`` until the last word has left."""

    def __init__(self, words: list, width: int, count_bits: int = 16):
        self._words, self._width = list(words) or [0], width
        self._abits = _bitlen(len(self._words) - 1)
        super().__init__({"start": In(1), "base": In(count_bits), "count": In(count_bits),
                          "valid": Out(1), "data": Out(width), "busy": Out(1), "index": Out(count_bits)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=unsigned(self._width), depth=len(self._words), init=self._words)
        rd = rom.read_port()
        k = Signal.like(self.count)
        active, v1 = Signal(), Signal()
        m.d.comb += [rd.addr.eq(self.base + k), self.data.eq(rd.data), self.valid.eq(v1),
                     self.busy.eq(active | v1), self.index.eq(k)]
        m.d.sync += v1.eq(active)
        with m.If(self.start):
            m.d.sync += [k.eq(0), active.eq(self.count != 0)]
        with m.Elif(active):
            m.d.sync += k.eq(k + 1)
            with m.If(k == self.count - 1):
                m.d.sync += active.eq(0)
        return m


DEBUG_PORTS = {
    "dbg_busy": 1, "dbg_step": 8, "dbg_mark": 1, "dbg_phase": 3,
    "dbg_wr_valid": 1, "dbg_wr_addr": 16, "dbg_wr_data": 16,
    "dbg_act_valid": 1, "dbg_act_data": 16,
    "dbg_s_valid": 1, "dbg_s_data": 32, "dbg_p_valid": 1, "dbg_h_valid": 1, "dbg_code": 8,
    "dbg_mn_valid": 1, "dbg_mn": 16, "dbg_ad_done": 1, "dbg_beta": 16, "dbg_r": 16, "dbg_sh": 6,
}


class Core(wiring.Component):
    """Everything of the accelerator but the register block (docs/accelerator.md)."""

    def __init__(self, prog: AccelProgram):
        self._p = prog
        members = {
            "s_in": In(stream.Signature(data.StructLayout({"data": 8, "last": 1}))),
            "m_out": Out(stream.Signature(data.StructLayout({"data": signed(32), "last": 1}))),
            "auto": In(1), "start": In(1),
            "busy": Out(1), "waiting": Out(1), "img_done": Out(1), "frame_err": Out(1),
            "images": Out(32), "frame_errors": Out(32), "cycles": Out(64),
        }
        members |= {name: Out(w) for name, w in DEBUG_PORTS.items()}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        ab = _bitlen(p.tmem_depth - 1)
        nsteps = len(p.steps)

        # --- memories ---------------------------------------------------------------------------
        m.submodules.tmem = tmem = Memory(shape=signed(16), depth=p.tmem_depth, init=[])
        t_wr = tmem.write_port()
        t_rd_a, t_rd_b = tmem.read_port(), tmem.read_port()
        m.submodules.dmem = dmem = Memory(shape=unsigned(desc_bits()), depth=nsteps, init=p.descriptors)
        d_rd = dmem.read_port()
        step = Signal(range(max(nsteps, 2)))
        m.d.comb += d_rd.addr.eq(step)
        desc = data.View(desc_layout(), d_rd.data)

        mn_depth = p.ad_cfg["mn_depth"]
        m.submodules.mnmem = mnmem = Memory(shape=unsigned(16), depth=mn_depth, init=[])
        mn_wr = mnmem.write_port()
        mn_rd0, mn_rd1 = mnmem.read_port(), mnmem.read_port()

        n_slots = max(len(p.adapters), 1)
        slot_r = [Signal(16, name=f"slot{i}_r") for i in range(n_slots)]
        slot_sh = [Signal(6, name=f"slot{i}_sh") for i in range(n_slots)]

        # --- units ------------------------------------------------------------------------------
        m.submodules.vec = vec = VectorUnit(addr_bits=ab, acc_bits=p.vec_acc_bits, two_inputs=p.has_add)
        for name, _w in WALK_FIELDS:
            m.d.comb += getattr(vec, f"cfg_{name}").eq(getattr(desc, name))
        m.d.comb += [vec.cfg_b.eq(desc.b), vec.cfg_lo.eq(desc.lo), vec.cfg_hi.eq(desc.hi),
                     t_rd_a.addr.eq(vec.rd_a_addr), t_rd_b.addr.eq(vec.rd_b_addr),
                     vec.rd_a_data.eq(t_rd_a.data), vec.rd_b_data.eq(t_rd_b.data)]
        for i in range(n_slots):
            with m.If(desc.use_slot & (desc.slot == i)):
                m.d.comb += [vec.cfg_m0.eq(slot_r[i]), vec.cfg_sh.eq(slot_sh[i])]

        ac = p.ad_cfg
        adapter = AdapterUnit(max_channels=ac["max_channels"], max_hidden=ac["max_hidden"], max_hw=ac["max_hw"],
                              max_mults=ac["max_mults"], beta_bits=ac["beta_bits"], beta_frac=ac["beta_frac"])
        m.submodules.adapter = adapter
        aw = RomFeeder(p.ad_w, 8)
        aq = RomFeeder(p.ad_q, Q_BITS, 8)
        am = RomFeeder(p.ad_m, 16)
        m.submodules.aw, m.submodules.aq, m.submodules.am = aw, aq, am
        m.d.comb += [
            aw.base.eq(desc.aw_base), aw.count.eq(desc.aw_count),
            aq.base.eq(desc.aq_base), aq.count.eq(desc.aq_count),
            am.base.eq(desc.am_base), am.count.eq(desc.am_count),
            adapter.w_in__valid.eq(aw.valid), adapter.w_in__payload.eq(aw.data),
            adapter.q_in__valid.eq(aq.valid), adapter.q_in__payload.eq(aq.data),
            adapter.m_in__valid.eq(am.valid), adapter.m_in__payload.eq(am.data),
            adapter.channels.eq(desc.channels), adapter.hidden.eq(desc.hidden),
            adapter.n_mults.eq(desc.am_count), adapter.g.eq(desc.g), adapter.hw.eq(desc.tap_hw),
        ]

        engines, pfeed = [], []
        for i, slot in enumerate(p.engines):
            e = slot.ecfg
            eng = Engine(e)             # its term memory is the ROM of its layers' terms
            pf = RomFeeder(slot.params, e.param_bits, 12)
            m.submodules[f"engine{i}"] = eng
            m.submodules[f"pfeed{i}"] = pf
            lw = sum(f.width for _, f in e.layer_layout())
            m.d.comb += [eng.layer.as_value().eq(desc.layer[:lw]), eng.term_base.eq(desc.t_base),
                         pf.base.eq(desc.p_base), pf.count.eq(desc.p_count),
                         eng.y_out.ready.eq(1)]
            # channel words: the static M replaced by M_n from the mn RAM when the layer has beta_from
            cb, nacc = e.count_bits, e.n_acc
            mbits = 16 * nacc
            mn_word = Cat(mn_rd0.data, mn_rd1.data)[:mbits]
            word = Signal(e.param_bits, name=f"pword{i}")
            m.d.comb += word.eq(pf.data)
            beta1 = Signal(name=f"beta1_{i}")
            m.d.sync += beta1.eq(desc.beta)
            with m.If(beta1):
                m.d.comb += word.eq(Cat(pf.data[:cb], mn_word, pf.data[cb + mbits:]))
            m.d.comb += [eng.p_in.valid.eq(pf.valid), eng.p_in.payload.eq(word)]
            engines.append(eng)
            pfeed.append(pf)
        # mn RAM read pointer of the parameter feeders: mn_base + index * n_acc
        sel_idx = Signal(16)
        for i, pf in enumerate(pfeed):
            with m.If(desc.engine == i):
                m.d.comb += sel_idx.eq(pf.index)
        mn_ptr = Signal(16)
        m.d.comb += mn_ptr.eq(desc.mn_base + Mux(desc.n_acc2, sel_idx << 1, sel_idx))
        m.d.comb += [mn_rd0.addr.eq(mn_ptr), mn_rd1.addr.eq(mn_ptr + 1)]

        # --- output FIFO --------------------------------------------------------------------------
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=33, depth=max(p.classes, 2))
        m.d.comb += [self.m_out.valid.eq(ofifo.r_rdy), self.m_out.payload.data.eq(ofifo.r_data[:32]),
                     self.m_out.payload.last.eq(ofifo.r_data[32]), ofifo.r_en.eq(self.m_out.ready)]

        # --- sequencer ----------------------------------------------------------------------------
        RX, DROP, WAIT, FETCH, GO, L_LOAD, L_RUN, L_DRAIN, V_RUN, A_LOAD, A_RUN = range(11)
        state = Signal(range(11), name="seq_state")
        in_base, n_in = p.input_region()[0], p.n_in
        running = Signal()
        in_idx = Signal(range(max(n_in, 2)))
        oidx = Signal(16)
        cyc = Signal(64)
        start_req = Signal()
        images = Signal(32)
        ferr = Signal(32)
        cycles = Signal(64)
        m.d.comb += [self.images.eq(images), self.frame_errors.eq(ferr), self.cycles.eq(cycles),
                     self.dbg_step.eq(step), self.dbg_busy.eq(running)]
        with m.If(self.start):
            m.d.sync += start_req.eq(1)

        m.d.comb += running.eq(state >= FETCH)
        m.d.comb += [self.busy.eq(running), self.waiting.eq(state == WAIT)]
        with m.If(running):
            m.d.sync += cyc.eq(cyc + 1)

        def mark(phase):
            m.d.comb += [self.dbg_mark.eq(1), self.dbg_phase.eq(PHASES[phase])]

        sel = Signal(range(max(len(engines), 2)))
        m.d.comb += sel.eq(desc.engine)
        eng_done = Signal()
        eng_y_valid = Signal()
        eng_y = Signal(signed(17))
        loads_busy = Signal()
        for i, eng in enumerate(engines):
            with m.If(sel == i):
                m.d.comb += [eng_done.eq(eng.done), eng_y_valid.eq(eng.y_out.valid),
                             loads_busy.eq(pfeed[i].busy | vec.busy),
                             eng.a_in.valid.eq(vec.y_valid & desc.sink),
                             eng.a_in.payload.eq(vec.y[:eng.config.dp.a_bits])]
                if eng.config.out_signed:
                    m.d.comb += eng_y.eq(eng.y_out.payload.as_signed())
                else:
                    m.d.comb += eng_y.eq(eng.y_out.payload)

        # tmem writes: the input, an engine's drain, the vector unit
        wr_v, wr_a, wr_d = Signal(), Signal(ab + 1), Signal(signed(16))
        m.d.comb += [t_wr.en.eq(wr_v), t_wr.addr.eq(wr_a), t_wr.data.eq(wr_d),
                     self.dbg_wr_valid.eq(wr_v), self.dbg_wr_addr.eq(wr_a), self.dbg_wr_data.eq(wr_d),
                     self.dbg_act_valid.eq(vec.y_valid & desc.sink & (state == L_LOAD)),
                     self.dbg_act_data.eq(vec.y)]
        produce = Signal()           # a step writes an output element
        with m.If(produce):
            m.d.sync += oidx.eq(oidx + 1)
        m.d.comb += [adapter.z_in__valid.eq(produce & desc.tap), adapter.z_in__payload.eq(wr_d[:15])]

        # adapter outputs
        midx = Signal(16)
        m.d.comb += [mn_wr.addr.eq(desc.am_base + midx), mn_wr.data.eq(adapter.mn), mn_wr.en.eq(adapter.mn_valid)]
        with m.If(adapter.mn_valid):
            m.d.sync += midx.eq(midx + 1)
        for i in range(n_slots):
            with m.If(adapter.done & (desc.slot == i)):
                m.d.sync += [slot_r[i].eq(adapter.r), slot_sh[i].eq(adapter.sh)]
        m.d.comb += [self.dbg_s_valid.eq(adapter.s_valid), self.dbg_s_data.eq(adapter.s_data),
                     self.dbg_p_valid.eq(adapter.p_valid), self.dbg_h_valid.eq(adapter.h_valid),
                     self.dbg_code.eq(adapter.code), self.dbg_mn_valid.eq(adapter.mn_valid),
                     self.dbg_mn.eq(adapter.mn), self.dbg_ad_done.eq(adapter.done),
                     self.dbg_beta.eq(adapter.beta), self.dbg_r.eq(adapter.r), self.dbg_sh.eq(adapter.sh)]

        def end_step():
            mark("end")
            with m.If(desc.last):
                m.d.sync += [state.eq(RX), images.eq(images + 1), cycles.eq(cyc + 1), step.eq(0)]
                m.d.comb += self.img_done.eq(1)
            with m.Else():
                m.d.sync += [state.eq(FETCH), step.eq(step + 1)]

        with m.If(state == RX):
            m.d.comb += self.s_in.ready.eq(1)
            with m.If(self.s_in.valid):
                m.d.comb += [wr_v.eq(1), wr_a.eq(in_base + in_idx), wr_d.eq(self.s_in.payload.data.as_signed())]
                with m.If(self.s_in.payload.last):
                    m.d.sync += in_idx.eq(0)
                    with m.If(in_idx == n_in - 1):
                        m.d.sync += state.eq(WAIT)
                    with m.Else():
                        m.d.comb += self.frame_err.eq(1)
                        m.d.sync += ferr.eq(ferr + 1)
                with m.Elif(in_idx == n_in - 1):
                    m.d.comb += self.frame_err.eq(1)
                    m.d.sync += [ferr.eq(ferr + 1), in_idx.eq(0), state.eq(DROP)]
                with m.Else():
                    m.d.sync += in_idx.eq(in_idx + 1)
        with m.Elif(state == DROP):
            m.d.comb += self.s_in.ready.eq(1)
            with m.If(self.s_in.valid & self.s_in.payload.last):
                m.d.sync += state.eq(RX)
        with m.Elif(state == WAIT):
            with m.If((self.auto | start_req) & (ofifo.r_level == 0)):
                m.d.sync += [state.eq(FETCH), step.eq(0), cyc.eq(0), start_req.eq(0)]
        with m.Elif(state == FETCH):
            m.d.sync += state.eq(GO)
        with m.Elif(state == GO):
            mark("go")
            m.d.sync += [oidx.eq(0), midx.eq(0)]
            with m.If(desc.op == OPS["LAYER"]):
                m.d.comb += vec.start.eq(1)
                for i in range(len(engines)):
                    with m.If(sel == i):
                        m.d.comb += pfeed[i].start.eq(1)
                m.d.sync += state.eq(L_LOAD)
            with m.Elif(desc.op == OPS["VEC"]):
                m.d.comb += vec.start.eq(1)
                m.d.sync += state.eq(V_RUN)
            with m.Else():
                m.d.comb += [aw.start.eq(1), aq.start.eq(1), am.start.eq(1)]
                m.d.sync += state.eq(A_LOAD)
        with m.Elif(state == L_LOAD):
            with m.If(~loads_busy):
                mark("engine_start")
                for i, eng in enumerate(engines):
                    with m.If(sel == i):
                        m.d.comb += eng.start.eq(1)
                m.d.sync += state.eq(L_RUN)
        with m.Elif(state == L_RUN):
            with m.If(eng_done):
                mark("engine_done")
                m.d.sync += state.eq(L_DRAIN)
        with m.Elif(state == L_DRAIN):
            with m.If(eng_y_valid):
                m.d.comb += [produce.eq(1), wr_v.eq(1), wr_a.eq(desc.dst + oidx), wr_d.eq(eng_y),
                             ofifo.w_en.eq(desc.is_output),
                             ofifo.w_data.eq(Cat(eng_y.as_signed()[:16], Mux(eng_y[15], 0xFFFF, 0),
                                                 oidx == desc.out_words - 1))]
                with m.If(oidx == desc.out_words - 1):
                    end_step()
        with m.Elif(state == V_RUN):
            with m.If(vec.y_valid):
                m.d.comb += [produce.eq(1), wr_v.eq(1), wr_a.eq(desc.dst + oidx), wr_d.eq(vec.y)]
            with m.If(vec.done):
                end_step()
        with m.Elif(state == A_LOAD):
            with m.If(~(aw.busy | aq.busy | am.busy)):
                mark("adapter_start")
                m.d.comb += adapter.start.eq(1)
                m.d.sync += state.eq(A_RUN)
        with m.Elif(state == A_RUN):
            with m.If(adapter.done):
                mark("adapter_done")
                end_step()
        return m
