"""The ASQ adapter pass in RTL: a companion unit of the engine (spec sections 13-15).

Per sample: the wide codes ``z`` stream in (``[c][hw]`` order, one per cycle) and are pooled
into ``S[c]``; after ``start`` the unit makes the mean codes ``P`` (one requantisation per
cycle), the hidden codes ``H`` and ``beta_q`` (one 8x8-bit multiply-add per cycle, one shared
requantiser), then the reciprocal ``R`` and shift ``sh`` of section 14 (a restoring divider,
one quotient bit per cycle) and, alongside the divider, the per-sample multipliers ``M_n`` of
the consuming layers (section 11, one per cycle), and raises ``done`` for one cycle. Its cycle count is
:func:`hdl.engine.adapter.adapter_cycles`.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from asqhw.core.validate import check_int

from ..requant import B_BITS, M_BITS, SH_BITS, Requantiser

__all__ = ["AdapterUnit", "check_sizes", "Q_BITS", "R_BITS", "pack_q", "s_bits", "fc_acc_bits"]

R_BITS = 16
Q_BITS = M_BITS + B_BITS + SH_BITS        # one requantiser parameter word: M | B << 16 | sh << 64
DIV_STEPS = 16


def _bitlen(x: int) -> int:
    return int(x).bit_length()


def s_bits(hw: int) -> int:
    """Unsigned width of a pool sum of ``hw`` wide codes (each below 2^15)."""
    return 15 + _bitlen(hw)


def fc_acc_bits(fan: int) -> int:
    """Signed width of a sum of ``fan`` products of an 8-bit unsigned code and an 8-bit weight."""
    return 17 + _bitlen(fan)


def pack_q(M: int, B: int, sh: int) -> int:
    """One parameter word of the ``q_in`` stream: ``M | (B mod 2^48) << 16 | sh << 64``."""
    return int(M) | ((int(B) & ((1 << B_BITS) - 1)) << M_BITS) | (int(sh) << (M_BITS + B_BITS))


def check_sizes(*, max_channels: int, max_hidden: int, max_hw: int, max_mults: int,
                beta_bits: int, beta_frac: int) -> None:
    """Raise UserError (a ValueError) naming the first build parameter of :class:`AdapterUnit` out of range."""
    for name, v, lo, hi in (("max_channels", max_channels, 1, 256),
                            ("max_hidden", max_hidden, 0, max_channels),
                            ("max_hw", max_hw, 1, 1 << 20), ("max_mults", max_mults, 1, 1 << 16),
                            ("beta_bits", beta_bits, 2, 15), ("beta_frac", beta_frac, 0, beta_bits)):
        check_int(name, v, lo, hi)


class AdapterUnit(wiring.Component):
    """Integer ASQ adapter of one ``channels x hw`` tensor (docs/datapath.md sections 13-14).

    Parameters
    ----------
    max_channels : int
        Largest ``C``, 1..256.
    max_hidden : int
        Largest ``C_h`` (0: single-layer adapters only).
    max_hw : int
        Largest number of elements per channel (``H*W``), 1..2^20.
    max_mults : int
        Largest number of static multipliers ``M`` of the consuming layers, 1..2^16.
    beta_bits, beta_frac : int
        ``b_beta`` (2..15) and ``f_b`` (0..``b_beta``).

    Ports
    -----
    channels, hidden, hw, n_mults : In
        ``C``, ``C_h``, ``H*W`` and the number of multipliers ``M`` of the adapter being run
        (held while it runs).
    z_in__valid, z_in__payload : In(1), In(15)
        Unsigned wide codes of one sample, ``[c][hw]`` order, at most one per cycle.
    w_in__valid, w_in__payload : In(1), In(8)
        Weights: ``w1`` row-major (``hidden x C``), then ``w2`` (two's complement).
    q_in__valid, q_in__payload : In(1), In(70)
        Requantiser words (:func:`pack_q`): pool, ``hidden`` rows of layer 1, layer 2.
    m_in__valid, m_in__payload : In(1), In(16)
        The consuming layers' static multipliers ``M[c][k]``, in the order ``M_n`` leaves.
    start : In(1)
        After the last code of a sample: run the pass. Also rewinds the load addresses.
    g : In(5)
        ``G`` of the consuming ``quant`` node (section 14).
    s_valid, s_data : Out(1), Out(s_bits)
        ``S[c]``, ``c = 0..C-1`` in order, as each is read.
    p_valid, h_valid, code : Out(1), Out(1), Out(8)
        ``P[c]`` and ``H[j]`` as each is made.
    mn_valid, mn : Out(1), Out(16)
        ``M_n = (M * beta_q + h) >> f_b`` of each loaded ``M`` in turn, one per cycle.
    done, beta, r, sh : Out(1), Out(b_beta), Out(16), Out(6)
        One cycle: ``beta_q``, ``R`` and ``sh = L + 14 + G - f_b``.
    """

    def __init__(self, *, max_channels: int, max_hidden: int, max_hw: int, max_mults: int = 1,
                 beta_bits: int = 10, beta_frac: int = 8):
        check_sizes(max_channels=max_channels, max_hidden=max_hidden, max_hw=max_hw,
                    max_mults=max_mults, beta_bits=beta_bits, beta_frac=beta_frac)
        self.max_channels, self.max_hidden, self.max_hw = max_channels, max_hidden, max_hw
        self.max_mults = max_mults
        self.beta_bits, self.beta_frac = beta_bits, beta_frac
        self.s_bits = s_bits(max_hw)
        self.acc_bits = max(self.s_bits + 1, fc_acc_bits(max_channels))
        self.n_weights = max_hidden * max_channels + max_channels
        self.n_q = 2 + max_hidden
        super().__init__({
            "channels": In(range(max_channels + 1)), "hidden": In(range(max_hidden + 1)),
            "hw": In(range(max_hw + 1)), "n_mults": In(range(max_mults + 1)),
            "m_in__valid": In(1), "m_in__payload": In(M_BITS),
            "mn_valid": Out(1), "mn": Out(M_BITS),
            "z_in__valid": In(1), "z_in__payload": In(15),
            "w_in__valid": In(1), "w_in__payload": In(8),
            "q_in__valid": In(1), "q_in__payload": In(Q_BITS),
            "start": In(1), "g": In(5),
            "s_valid": Out(1), "s_data": Out(self.s_bits),
            "p_valid": Out(1), "h_valid": Out(1), "code": Out(8),
            "done": Out(1), "beta": Out(beta_bits), "r": Out(R_BITS), "sh": Out(6),
        })

    def elaborate(self, platform):
        m = Module()
        C, Ch, HW = self.channels, self.hidden, self.hw
        fan2 = Signal(range(self.max_channels + 1))
        m.d.comb += fan2.eq(Mux(Ch == 0, C, Ch))
        MC, MH = self.max_channels, self.max_hidden
        bb, fb = self.beta_bits, self.beta_frac

        def counter(limit, name):
            return Signal(range(max(limit, 2)), name=name)

        # --- memories (combinational reads) ---
        smem = Memory(shape=unsigned(self.s_bits), depth=MC, init=[])
        pmem = Memory(shape=unsigned(8), depth=MC, init=[])
        hmem = Memory(shape=unsigned(8), depth=max(MH, 1), init=[])
        wmem = Memory(shape=signed(8), depth=self.n_weights, init=[])
        qmem = Memory(shape=unsigned(Q_BITS), depth=self.n_q, init=[])
        m.submodules.smem, m.submodules.pmem, m.submodules.hmem = smem, pmem, hmem
        m.submodules.wmem, m.submodules.qmem = wmem, qmem
        s_wr, s_rd = smem.write_port(), smem.read_port(domain="comb")
        p_wr, p_rd = pmem.write_port(), pmem.read_port(domain="comb")
        h_wr, h_rd = hmem.write_port(), hmem.read_port(domain="comb")
        w_wr, w_rd = wmem.write_port(), wmem.read_port(domain="comb")
        q_wr, q_rd = qmem.write_port(), qmem.read_port(domain="comb")

        # --- parameter loading ---
        w_addr, q_addr = counter(self.n_weights, "w_addr"), counter(self.n_q, "q_addr")
        m.d.comb += [w_wr.addr.eq(w_addr), w_wr.data.eq(self.w_in__payload), w_wr.en.eq(self.w_in__valid),
                     q_wr.addr.eq(q_addr), q_wr.data.eq(self.q_in__payload), q_wr.en.eq(self.q_in__valid)]
        with m.If(self.start):
            m.d.sync += [w_addr.eq(0), q_addr.eq(0)]
        with m.Else():
            with m.If(self.w_in__valid):
                m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(self.q_in__valid):
                m.d.sync += q_addr.eq(q_addr + 1)

        mmem = Memory(shape=unsigned(M_BITS), depth=self.max_mults, init=[])
        m.submodules.mmem = mmem
        m_wr, m_rd = mmem.write_port(), mmem.read_port(domain="comb")
        m_addr = counter(self.max_mults, "m_addr")
        m.d.comb += [m_wr.addr.eq(m_addr), m_wr.data.eq(self.m_in__payload), m_wr.en.eq(self.m_in__valid)]
        with m.If(self.start):
            m.d.sync += m_addr.eq(0)
        with m.Elif(self.m_in__valid):
            m.d.sync += m_addr.eq(m_addr + 1)

        # --- pool, fused with the stream of z ---
        pool = Signal(self.s_bits)
        z_hw, z_c = counter(self.max_hw, "z_hw"), counter(MC, "z_c")
        total = Signal(self.s_bits + 1)
        m.d.comb += total.eq(pool + self.z_in__payload)
        m.d.comb += [s_wr.addr.eq(z_c), s_wr.data.eq(total)]
        with m.If(self.start):
            m.d.sync += [pool.eq(0), z_hw.eq(0), z_c.eq(0)]
        with m.Elif(self.z_in__valid):
            with m.If(z_hw == HW - 1):
                m.d.comb += s_wr.en.eq(1)
                m.d.sync += [pool.eq(0), z_hw.eq(0), z_c.eq(z_c + 1)]
            with m.Else():
                m.d.sync += [pool.eq(total), z_hw.eq(z_hw + 1)]

        # --- one requantiser for P, H and beta ---
        rq = Requantiser(n_acc=1, acc_bits=self.acc_bits, out_bits=15, out_signed=False, pipeline=1)
        m.submodules.rq = rq
        q = q_rd.data
        m.d.comb += [rq.m.eq(q[:M_BITS]), rq.b.eq(q[M_BITS:M_BITS + B_BITS].as_signed()),
                     rq.sh.eq(q[M_BITS + B_BITS:])]
        # what the requantiser's output is: 0 P, 1 H, 2 beta; and where it goes
        kind_in, kind_out = Signal(2), Signal(2)
        idx_out = counter(MC, "idx_out")
        m.d.sync += kind_out.eq(kind_in)
        y = rq.y
        beta_c = Signal(bb)
        m.d.comb += beta_c.eq(Mux(y < 1, 1, Mux(y > (1 << bb) - 1, (1 << bb) - 1, y)))
        code_c = Signal(8)
        m.d.comb += code_c.eq(Mux(y > 255, 255, y))
        m.d.comb += [p_wr.addr.eq(idx_out), p_wr.data.eq(code_c),
                     h_wr.addr.eq(idx_out), h_wr.data.eq(code_c), self.code.eq(code_c)]
        p_count = Signal(range(MC + 1))        # P[0..p_count-1] are in memory
        h_count = Signal(range(max(MH, 1) + 1))
        beta_ready = Signal()
        m.d.comb += beta_ready.eq(0)
        with m.If(self.start):
            m.d.sync += [idx_out.eq(0), p_count.eq(0), h_count.eq(0)]
        with m.Elif(rq.y_valid):
            with m.If(kind_out == 0):
                m.d.comb += [p_wr.en.eq(1), self.p_valid.eq(1)]
                m.d.sync += [p_count.eq(p_count + 1),
                             idx_out.eq(Mux(idx_out == C - 1, 0, idx_out + 1))]
            with m.Elif(kind_out == 1):
                m.d.comb += [h_wr.en.eq(1), self.h_valid.eq(1)]
                m.d.sync += [h_count.eq(h_count + 1), idx_out.eq(idx_out + 1)]
            with m.Else():
                m.d.comb += beta_ready.eq(1)

        # --- the pass: mean codes, FC layers (one MAC per cycle) ---
        acc = Signal(signed(self.acc_bits))
        rq_acc = Signal(signed(self.acc_bits))
        m.d.comb += rq.acc.eq(rq_acc)
        i = counter(MC, "i")                     # input index of the FC row / pool channel
        j = counter(max(MH, 1), "j")            # row of layer 1
        w_idx = counter(self.n_weights, "w_idx")
        first = Signal()                          # the next MAC starts a sum
        src = Signal(8)
        avail = Signal()
        prod = Signal(signed(17))
        m.d.comb += [w_rd.addr.eq(w_idx), p_rd.addr.eq(i), h_rd.addr.eq(i),
                     prod.eq(src * w_rd.data)]
        feed = Signal()                          # a finished sum is in acc: requantise it
        feed_kind = Signal(2)
        feed_q = counter(self.n_q, "feed_q")
        m.d.comb += [s_rd.addr.eq(i)]
        with m.If(feed):
            m.d.comb += [rq.valid.eq(1), rq_acc.eq(acc), kind_in.eq(feed_kind), q_rd.addr.eq(feed_q)]
        m.d.sync += feed.eq(0)

        # divider state
        rem = Signal(bb + 17)
        dsh = Signal(bb + 17)                    # 2 beta_q << (15 - step)
        quo = Signal(R_BITS)
        step = Signal(range(DIV_STEPS + 1))
        beta_r = Signal(bb)
        L = Signal(range(bb + 1))

        # per-sample multipliers (section 11), one per cycle from the cycle after beta_q
        m_run = Signal()
        m_idx = counter(self.max_mults, "m_idx")
        mprod = Signal(M_BITS + bb)
        h = (1 << (fb - 1)) if fb >= 1 else 0
        m.d.comb += [m_rd.addr.eq(m_idx), mprod.eq(m_rd.data * beta_r + h)]
        with m.If(m_run):
            m.d.comb += [self.mn_valid.eq(1), self.mn.eq(mprod >> fb)]
            m.d.sync += m_idx.eq(m_idx + 1)
            with m.If(m_idx == self.n_mults - 1):
                m.d.sync += m_run.eq(0)

        def acc_step(value):
            m.d.sync += acc.eq(Mux(first, 0, acc) + value)

        # States as an explicit register decoded by an if-chain (the last branch, DONE, also
        # takes the unused encoding); Verilator -Wall flags yosys' case form of an FSM.
        IDLE, POOL, FC1, FC2, BETA, DIV, DONE = range(7)
        state = Signal(range(8), name="state")
        with m.If(state == IDLE):
            with m.If(self.start):
                m.d.sync += i.eq(0)
                m.d.sync += state.eq(POOL)
        with m.Elif(state == POOL):
            m.d.comb += [self.s_valid.eq(1), rq.valid.eq(1), rq_acc.eq(s_rd.data),
                         q_rd.addr.eq(0), kind_in.eq(0)]
            with m.If(i == C - 1):
                m.d.sync += [i.eq(0), j.eq(0), w_idx.eq(0), first.eq(1)]
                with m.If(Ch == 0):
                    m.d.sync += state.eq(FC2)
                with m.Else():
                    m.d.sync += state.eq(FC1)
            with m.Else():
                m.d.sync += i.eq(i + 1)
        if MH:
            with m.Elif(state == FC1):
                m.d.comb += [src.eq(p_rd.data), avail.eq(p_count > i)]
                with m.If(avail):
                    acc_step(prod)
                    m.d.sync += [first.eq(i == C - 1), w_idx.eq(w_idx + 1)]
                    with m.If(i == C - 1):
                        m.d.sync += [feed.eq(1), feed_kind.eq(1), feed_q.eq(1 + j), i.eq(0)]
                        with m.If(j == Ch - 1):
                            m.d.sync += state.eq(FC2)
                        with m.Else():
                            m.d.sync += j.eq(j + 1)
                    with m.Else():
                        m.d.sync += i.eq(i + 1)
        with m.Elif(state == FC2):
            with m.If(Ch == 0):
                m.d.comb += [src.eq(p_rd.data), avail.eq(p_count > i)]
            with m.Else():
                m.d.comb += [src.eq(h_rd.data), avail.eq(h_count > i)]
            with m.If(avail):
                acc_step(prod)
                m.d.sync += [first.eq(0), w_idx.eq(w_idx + 1)]
                with m.If(i == fan2 - 1):
                    m.d.sync += [feed.eq(1), feed_kind.eq(2), feed_q.eq(1 + Ch), i.eq(0)]
                    m.d.sync += state.eq(BETA)
                with m.Else():
                    m.d.sync += i.eq(i + 1)
        with m.Elif(state == BETA):
            # section 14: R = (2^(L+15) + beta_q) // (2 beta_q), L = bitlen(beta_q)
            with m.If(beta_ready):
                lc = Signal(range(bb + 1))
                for k in range(bb):
                    with m.If(beta_c[k]):
                        m.d.comb += lc.eq(k + 1)
                m.d.sync += [beta_r.eq(beta_c), L.eq(lc), dsh.eq(beta_c << 16),
                             rem.eq((Const(1, bb + 17) << (lc + 15)) + beta_c),
                             quo.eq(0), step.eq(0), m_idx.eq(0), m_run.eq(self.n_mults != 0)]
                m.d.sync += state.eq(DIV)
        with m.Elif(state == DIV):
            # restoring division, quotient bit 15 - step per cycle
            trial = Signal(signed(bb + 18))
            m.d.comb += trial.eq(rem - dsh)
            m.d.sync += dsh.eq(dsh >> 1)
            with m.If(trial >= 0):
                m.d.sync += [rem.eq(trial), quo.eq((quo << 1) | 1)]
            with m.Else():
                m.d.sync += quo.eq(quo << 1)
            m.d.sync += step.eq(step + 1)
            with m.If(step == DIV_STEPS - 1):
                m.d.sync += state.eq(DONE)
        with m.Else():                                     # DONE, once every M_n is out
            with m.If(~m_run):
                m.d.comb += [self.done.eq(1), self.beta.eq(beta_r), self.r.eq(quo),
                             self.sh.eq(L + 14 + self.g - fb)]
                m.d.sync += state.eq(IDLE)
        m.d.comb += self.s_data.eq(s_rd.data)
        return m
