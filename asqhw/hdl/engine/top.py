"""The layer engine: memories, loaders, tile walker, lane array, drain and the run FSM.

Run FSM (one output channel after the other, tiles of each channel in turn):

``IDLE`` --start--> ``HDR`` (read the channel word) -> ``LOAD`` (latch its entry count
``n_c``) -> ``RUN``: one term entry per cycle, ``ptr = chan_start + k``; the entry reaches
the activation read ports one cycle later and the lanes one cycle after that. A tile
starts (``k = 0``) only if its capture, ``n_c + 2`` cycles later, finds the drain free:
the counter ``R`` holds the cycles until the previous capture's drain ends, and the
tile starts when ``R <= n_c``. After a channel's last tile the FSM goes to ``HDR`` for
the next channel, or to ``FLUSH`` to wait for the pipeline and the drain, then pulses
``done`` and returns to ``IDLE``. The cycle count is derived in docs/engine.md and
computed by ``hdl.engine.cycles``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .drain import Drain
from .lanes import LaneArray
from .memories import StreamLoader
from .params import EngineConfig
from .tiles import TileWalker

__all__ = ["Engine"]


class Engine(wiring.Component):
    """One conv2d/linear layer from on-chip memories (docs/engine.md).

    Parameters
    ----------
    ecfg : EngineConfig

    Ports
    -----
    start : In(1)
        Starts a run (sampled in ``IDLE``).
    busy : Out(1), done : Out(1)
        ``done`` is high for one cycle when the output buffer is complete.
    layer : In(EngineConfig.layer_layout())
        Loop bounds and steps (``hdl.engine.program``); hold stable while busy.
    w_in, a_in, p_in : In(stream.Signature)
        Load the term memory, the activation buffer and the channel memory from
        address 0 (refused while busy; the load pointers return to 0 at ``done``).
    term_base : In(range(term_depth + 1))
        Only with ``EngineConfig.term_rom``: added to every term address (held while busy).
    y_out : Out(stream.Signature(out code))
        After ``done``: the output buffer from address 0, ``[c][n][oy][ox]``.
    """

    def __init__(self, ecfg: EngineConfig):
        if not isinstance(ecfg, EngineConfig):
            raise TypeError(f"ecfg must be an EngineConfig, not {ecfg!r}")
        self._e = ecfg
        members = {
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "layer": In(ecfg.layer_layout()),
            "w_in": In(stream.Signature(unsigned(ecfg.term_bits))),
            "a_in": In(stream.Signature(unsigned(ecfg.dp.a_bits))),
            "p_in": In(stream.Signature(unsigned(ecfg.param_bits))),
            "y_out": Out(stream.Signature(ecfg.out_shape)),
        }
        if ecfg.term_rom:       # an initialised term memory: runs address it from term_base
            members["term_base"] = In(range(ecfg.term_depth + 1))
        super().__init__(members)

    @property
    def config(self) -> EngineConfig:
        return self._e

    def elaborate(self, platform):
        m = Module()
        e = self._e
        L, ab = e.lanes, e.dp.a_bits

        # --- memories and loaders ------------------------------------------------
        m.submodules.wmem = wmem = Memory(shape=unsigned(e.term_bits), depth=e.term_depth, init=list(e.term_rom))
        banks = []
        for b in range(L):
            banks.append(Memory(shape=unsigned(ab), depth=e.bank_depth, init=[]))
            m.submodules[f"abank{b}"] = banks[-1]
        m.submodules.pmem = pmem = Memory(shape=e.param_layout(), depth=e.max_channels, init=[])
        m.submodules.omem = omem = Memory(shape=e.out_shape, depth=e.out_depth, init=[])
        w_wr, p_wr, o_wr = (mem.write_port() for mem in (wmem, pmem, omem))
        a_wr = [bank.write_port() for bank in banks]
        w_rd = wmem.read_port()
        a_rd = [bank.read_port() for bank in banks]
        lb = e.lane_bits
        p_rd_fsm = pmem.read_port()
        p_rd_drain = pmem.read_port()
        o_rd = omem.read_port()

        busy = Signal()
        end = Signal()          # a run ends in this cycle
        for name, stream_port, wr, depth in (("wload", self.w_in, [w_wr], e.term_depth),
                                             ("aload", self.a_in, a_wr, e.act_depth),
                                             ("pload", self.p_in, [p_wr], e.max_channels)):
            ld = StreamLoader(Value.cast(wr[0].data).shape().width, depth)
            m.submodules[name] = ld
            m.d.comb += [
                ld.s.valid.eq(stream_port.valid), ld.s.payload.eq(stream_port.payload),
                stream_port.ready.eq(ld.s.ready), ld.hold.eq(busy), ld.clear.eq(end),
            ]
            if len(wr) == 1:
                m.d.comb += [wr[0].addr.eq(ld.addr), wr[0].data.eq(ld.data), wr[0].en.eq(ld.en)]
            else:       # activation banks: bank = address mod lanes, row = address div lanes
                for b, port in enumerate(wr):
                    m.d.comb += [port.addr.eq(ld.addr[lb:]), port.data.eq(ld.data),
                                 port.en.eq(ld.en & (ld.addr[:lb] == b if lb else 1))]

        # --- datapath --------------------------------------------------------------
        m.submodules.tiles = tiles = TileWalker(e)
        m.submodules.array = array = LaneArray(e)
        m.submodules.drain = drain = Drain(e)
        m.d.comb += tiles.layer.eq(self.layer)

        chan = Signal(unsigned(e.chan_bits + 1))
        chan_start = Signal(range(e.term_depth + 1))
        k = Signal(range(e.term_depth + 1))
        n_c = Signal(unsigned(e.count_bits))
        R = Signal(range(e.term_depth + L + 2))      # cycles until the drain is free
        issue = Signal()
        t_first = Signal()
        t_last = Signal()

        # stage 1 (entry read), stage 2 (activations read, lanes add)
        s1 = {"valid": Signal(name="s1_valid"), "first": Signal(name="s1_first"),
              "last": Signal(name="s1_last"), "base": Signal(e.act_addr_bits, name="s1_base"),
              "nv": Signal(range(L + 1), name="s1_nv"), "chan": Signal(e.chan_bits, name="s1_chan")}
        s2 = {"valid": Signal(name="s2_valid"), "first": Signal(name="s2_first"),
              "last": Signal(name="s2_last"), "payload": Signal(e.payload_bits, name="s2_payload"),
              "nv": Signal(range(L + 1), name="s2_nv"), "chan": Signal(e.chan_bits, name="s2_chan")}
        m.d.comb += [
            w_rd.addr.eq(chan_start + k + self.term_base if e.term_rom else chan_start + k),
            t_first.eq(k == 0),
            t_last.eq(k == n_c - 1),
        ]
        m.d.sync += [
            s1["valid"].eq(issue), s1["first"].eq(t_first), s1["last"].eq(t_last),
            s1["base"].eq(tiles.base), s1["nv"].eq(tiles.nv), s1["chan"].eq(chan),
        ]
        entry = w_rd.data
        offset = entry[e.payload_bits:]
        # Lane l reads address a0 + l: bank (a0 + l) mod lanes. Bank b reads row
        # (a0 >> lb) + (b < a0 mod lanes); in stage 2 lane l takes bank (r + l) mod lanes.
        a0 = Signal(e.act_addr_bits, name="a0")
        rot = Signal(max(lb, 1), name="s2_rot")
        m.d.comb += a0.eq(s1["base"] + offset)
        for b, port in enumerate(a_rd):
            if lb and b < L - 1:
                m.d.comb += port.addr.eq(a0[lb:] + (a0[:lb] > b))
            else:
                m.d.comb += port.addr.eq(a0[lb:])
        if lb:
            m.d.sync += rot.eq(a0[:lb])
        m.d.sync += [
            s2["valid"].eq(s1["valid"]), s2["first"].eq(s1["first"]), s2["last"].eq(s1["last"]),
            s2["payload"].eq(entry[:e.payload_bits]), s2["nv"].eq(s1["nv"]),
            s2["chan"].eq(s1["chan"]),
        ]
        m.d.comb += [
            array.valid.eq(s2["valid"]), array.first.eq(s2["first"]), array.last.eq(s2["last"]),
            array.payload.eq(s2["payload"]),
        ]
        lanes_a = Cat(*(p.data for p in a_rd))
        for i in range(lb):         # barrel rotator: bank (r + l) mod lanes to lane l
            nxt = Signal(len(lanes_a), name=f"rot{i}")
            m.d.comb += nxt.eq(Mux(rot[i], lanes_a.rotate_right(ab << i), lanes_a))
            lanes_a = nxt
        m.d.comb += array.a.eq(lanes_a)
        cap_chan = Signal(e.chan_bits)
        cap_nv = Signal(range(L + 1))
        with m.If(s2["valid"] & s2["last"]):
            m.d.sync += [cap_chan.eq(s2["chan"]), cap_nv.eq(s2["nv"])]
        m.d.comb += [
            drain.cap.eq(array.cap), drain.cap_chan.eq(cap_chan), drain.cap_nv.eq(cap_nv),
            drain.shadow.eq(array.shadow),
            p_rd_drain.addr.eq(drain.p_addr), drain.p_data.eq(p_rd_drain.data),
        ]

        # --- output buffer -------------------------------------------------------------
        o_wptr = Signal(range(e.out_depth + 1))
        o_rptr = Signal(range(e.out_depth + 1))
        out_ok = Signal()
        xfer = Signal()
        m.d.comb += [
            o_wr.addr.eq(o_wptr), o_wr.data.eq(drain.y), o_wr.en.eq(drain.y_valid),
            self.y_out.valid.eq(out_ok & (o_rptr != o_wptr)),
            self.y_out.payload.eq(o_rd.data),
            xfer.eq(self.y_out.valid & self.y_out.ready),
            o_rd.addr.eq(o_rptr + xfer),
        ]
        with m.If(drain.y_valid):
            m.d.sync += o_wptr.eq(o_wptr + 1)
        with m.If(xfer):
            m.d.sync += o_rptr.eq(o_rptr + 1)

        # --- run FSM -------------------------------------------------------------------
        with m.If(R != 0):
            m.d.sync += R.eq(R - 1)
        done = Signal()
        m.d.comb += [self.done.eq(done), self.busy.eq(busy), p_rd_fsm.addr.eq(chan)]
        m.d.sync += done.eq(0)
        # States as an explicit register decoded by an if-chain; the unused encodings
        # behave as FLUSH (which returns to IDLE).
        IDLE, HDR, LOAD, RUN = range(4)
        state = Signal(range(5), name="run_state")
        with m.If(state == IDLE):
            with m.If(self.start):
                m.d.sync += [chan.eq(0), chan_start.eq(0), k.eq(0), R.eq(0),
                             o_wptr.eq(0), o_rptr.eq(0), out_ok.eq(0), state.eq(HDR)]
                m.d.comb += tiles.restart.eq(1)
            with m.Elif(done):
                m.d.sync += out_ok.eq(1)
        with m.Elif(state == HDR):
            m.d.comb += busy.eq(1)
            m.d.sync += state.eq(LOAD)
        with m.Elif(state == LOAD):
            m.d.comb += busy.eq(1)
            m.d.sync += [n_c.eq(p_rd_fsm.data.count), k.eq(0), state.eq(RUN)]
        with m.Elif(state == RUN):
            m.d.comb += [busy.eq(1), issue.eq(~t_first | (R <= n_c))]
            with m.If(issue):
                with m.If(t_first):
                    m.d.sync += R.eq(n_c + tiles.nv)
                with m.If(t_last):
                    m.d.sync += k.eq(0)
                    m.d.comb += tiles.advance.eq(1)
                    with m.If(tiles.last):
                        m.d.sync += [chan_start.eq(chan_start + n_c), chan.eq(chan + 1)]
                        with m.If(chan == self.layer.n_chan - 1):
                            m.d.sync += state.eq(RUN + 1)      # FLUSH
                        with m.Else():
                            m.d.sync += state.eq(HDR)
                with m.Else():
                    m.d.sync += k.eq(k + 1)
        with m.Else():                                         # FLUSH
            m.d.comb += busy.eq(1)
            with m.If(~s1["valid"] & ~s2["valid"] & ~array.cap & ~drain.busy):
                m.d.sync += [done.eq(1), state.eq(IDLE)]
                m.d.comb += end.eq(1)
        return m
