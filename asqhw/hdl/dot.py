"""The dot-product unit: N product lanes, an adder tree and the accumulator(s).

Two schedules (docs/datapath.md section 9, docs/rtl.md):

``any``
    Every lane takes any weight code: one product lane of ``dp.arch`` per lane
    (``hdl.lanes``), one adder tree per accumulator (``split`` gates each lane's
    product into the tree of its accumulator index).
``grouped`` (``shift``, ``split`` and ``mul``)
    All lanes of a beat share one exponent ``W`` (port ``exp``; pot/post) or one
    weight magnitude ``|q|`` (port ``mag``; uniform); zero weights are never sent.
    Lanes only negate ``A`` (``XOR`` plus carry), the adder tree adds
    ``b_a + 1``-bit values, and one scaler after the tree scales the beat sum:
    a shifter by ``E_max - W`` for ``pot``, by ``S - floor(W/2)`` into
    ``acc_(W mod 2)`` for ``post split``, one multiplier by ``|q|`` for
    ``uniform``. The shifters take the leftover carry ``c`` of the tree along as
    ``((T << s) | (c ? 2^s - 1 : 0)) + c = (T + c) << s``: the vacated bits are
    filled with ``c`` and ``c`` goes into the accumulator adder's carry input.
    The multiplier takes ``(T + c) * |q|`` (a narrow adder before it).

Combinational levels: the lanes, ``ceil(log2(lanes))`` tree levels and (grouped)
the scaler. The ``pipeline`` registers go after the levels that best balance a
rough iCE40 delay model (property ``cuts``); the accumulator adder is the last stage.
"""

from __future__ import annotations

from itertools import combinations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from asqhw.core.params import MAX_ACC_BITS, Datapath
from asqhw.core.validate import check_choice, check_int

from .adders import add_terms, register, tree_depth
from .lanes import SignLane, make_lane

__all__ = ["DotUnit", "SCHEDULES", "GROUPED_ARCHS", "MAX_LANES"]

SCHEDULES = ("any", "grouped")
#: Product architectures that have a ``grouped`` schedule (pot, post split, uniform).
GROUPED_ARCHS = ("shift", "split", "mul")
MAX_LANES = 1024


# Rough iCE40 delays in ns (one LUT plus its routing; one carry-chain bit), used only to
# place pipeline registers; measured critical paths on the HX8K are close to this model.
_LUT_NS = 1.0
_CARRY_NS = 0.13


def _best_cuts(level_ns: list[float], acc_ns: float, pipeline: int) -> tuple[int, ...]:
    """Levels after which to register so that the slowest stage is fastest.

    Ties go to the earliest placement. ``level_ns`` are the combinational levels in
    order; the accumulator stage (``acc_ns``) always follows the last level.
    """
    def worst(cuts):
        edges = [-1, *cuts, len(level_ns) - 1]
        stages = [sum(level_ns[lo + 1:hi + 1]) for lo, hi in zip(edges, edges[1:])]
        stages[-1] += acc_ns
        return max(stages)

    return min(combinations(range(len(level_ns)), pipeline), key=worst)


class DotUnit(wiring.Component):
    """Dot product of ``lanes`` terms per beat into ``n_acc`` wrapping accumulators.

    Parameters
    ----------
    dp : Datapath
        Weight format, widths and architecture.
    lanes : int
        Terms per beat, 1..1024.
    acc_bits : int
        Accumulator width, 2..40; sums wrap modulo ``2^acc_bits``.
    schedule : str
        ``"any"`` or ``"grouped"`` (``shift``/``split``/``mul``).
    pipeline : int
        Register stages before the accumulator, ``0..max_pipeline``.

    Ports
    -----
    valid, first, last : In(1)
        A beat; ``first`` loads instead of adding; ``last`` ends the dot product.
    a : In(lanes * b_a)
        Activation code of lane ``i`` at bits ``[i*b_a, (i+1)*b_a)``.
    w : In(lanes * storage_bits)
        Schedule ``any``: weight code of lane ``i`` at bits ``[i*storage_bits, ...)``.
    neg : In(lanes), exp : In(bitlen(E_max))
        Schedule ``grouped``: per-lane weight sign and the beat's shared exponent ``W``.
    mag : In(b_w)
        Schedule ``grouped``, ``uniform`` (``mul``): the beat's shared weight magnitude
        ``|q|`` (0..2^(b_w-1)) instead of ``exp``.
    acc : Out(n_acc * acc_bits)
        Accumulator ``k`` at bits ``[k*acc_bits, (k+1)*acc_bits)``, two's complement.
        The accumulators are reset-less: undefined until the first ``first`` beat.
    out_valid : Out(1)
        High for one cycle when ``acc`` holds a finished dot product.

    Read-only properties: ``latency`` (``pipeline + 1``), ``max_pipeline``
    (``1 + ceil(log2(lanes))``, plus 1 for ``grouped``), ``cuts``, and the parameters.
    """

    def __init__(self, dp: Datapath, *, lanes: int, acc_bits: int, schedule: str = "any", pipeline: int = 1):
        try:
            self._validate(dp, lanes, acc_bits, schedule, pipeline)
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a rejected unit is not an unused one
            raise
        members = {
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "a": In(unsigned(lanes * dp.a_bits)),
        }
        if schedule == "any":
            members["w"] = In(unsigned(lanes * dp.storage_bits))
        else:
            members["neg"] = In(unsigned(lanes))
            if dp.arch == "mul":
                members["mag"] = In(unsigned(dp.w_bits))
            else:
                members["exp"] = In(unsigned(dp.e_max.bit_length()))
        members["acc"] = Out(unsigned(dp.n_acc * acc_bits))
        members["out_valid"] = Out(1)
        super().__init__(members)

    def _validate(self, dp, lanes, acc_bits, schedule, pipeline):
        if not isinstance(dp, Datapath):
            raise TypeError(f"dp must be an asqhw.core.params.Datapath, not {dp!r}")
        check_int("lanes", lanes, 1, MAX_LANES)
        check_int("acc_bits", acc_bits, 2, MAX_ACC_BITS)
        check_choice("schedule", schedule, SCHEDULES)
        if schedule == "grouped" and dp.arch not in GROUPED_ARCHS:
            raise ValueError(f"schedule 'grouped' needs arch shift, split or mul, not {dp.arch!r}")
        self._dp = dp
        self._lanes = lanes
        self._acc_bits = acc_bits
        self._schedule = schedule
        self._n_levels = 1 + tree_depth(lanes) + (schedule == "grouped")
        check_int("pipeline", pipeline, 0, self._n_levels)
        self._pipeline = pipeline

    # --- read-only facts ------------------------------------------------
    @property
    def dp(self) -> Datapath:
        """The datapath configuration."""
        return self._dp

    @property
    def lanes(self) -> int:
        """Terms per beat."""
        return self._lanes

    @property
    def acc_bits(self) -> int:
        """Accumulator width."""
        return self._acc_bits

    @property
    def schedule(self) -> str:
        """``"any"`` or ``"grouped"``."""
        return self._schedule

    @property
    def pipeline(self) -> int:
        """Register stages before the accumulator."""
        return self._pipeline

    @property
    def max_pipeline(self) -> int:
        """Largest legal ``pipeline``: one register after every combinational level."""
        return self._n_levels

    @property
    def cuts(self) -> tuple[int, ...]:
        """Levels (0 = lanes, 1.. = adder-tree levels, last = grouped scaler) followed by a register.

        Chosen to balance a rough iCE40 delay model of the levels and the accumulator.
        """
        return _best_cuts(self._level_ns(), self._acc_ns(), self._pipeline)

    def _level_ns(self) -> list[float]:
        dp, n = self._dp, self._lanes
        if self._schedule == "grouped":
            lane, width = _LUT_NS, dp.a_bits + 1
        else:
            width = dp.p_max.bit_length() + 1
            if dp.arch == "mul":
                lane = 4 * _LUT_NS + _CARRY_NS * (dp.a_bits + dp.w_bits)
            elif dp.arch == "lut":
                lane = 4 * _LUT_NS
            else:                       # a barrel shifter, then the sign XOR
                lane = _LUT_NS * (dp.frac_bits.bit_length() + 1)
        levels = [lane]
        for level in range(1, tree_depth(n) + 1):
            levels.append(_LUT_NS + _CARRY_NS * min(width + level, self._acc_bits))
        if self._schedule == "grouped" and dp.arch == "mul":
            # (T + c) * |q|: a narrow adder, then a b_w-bit multiplier
            tree = width + tree_depth(n)
            levels.append(4 * _LUT_NS + _CARRY_NS * 2 * min(tree + dp.w_bits, self._acc_bits))
        elif self._schedule == "grouped":
            top = dp.e_max if dp.arch == "shift" else dp.frac_bits
            levels.append(_LUT_NS * top.bit_length())
        return levels

    def _acc_ns(self) -> float:
        return 2 * _LUT_NS + _CARRY_NS * self._acc_bits

    @property
    def latency(self) -> int:
        """``pipeline + 1``: a ``last`` beat presented in cycle ``t`` gives ``out_valid`` in cycle ``t + latency``.

        In a testbench: set the beat, then after ``latency`` calls of ``ctx.tick()``
        (the first samples the beat) ``out_valid`` is 1 and ``acc`` holds the result.
        """
        return self._pipeline + 1

    # --- structure ---------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        n, nbits = self._lanes, self._acc_bits
        grouped = self._schedule == "grouped"
        cuts = set(self.cuts)

        side = {"valid": self.valid, "first": self.first, "last": self.last}
        if grouped:
            side["exp"] = self.mag if self._dp.arch == "mul" else self.exp
        trees = self._lanes_terms(m)

        def stage(level):
            nonlocal trees, side
            if level not in cuts:
                return
            trees = [
                [(register(m, x, f"t{k}_p{level}_x{i}"), register(m, c, f"t{k}_p{level}_c{i}"))
                 for i, (x, c) in enumerate(terms)]
                for k, terms in enumerate(trees)
            ]
            side = {key: register(m, v, f"{key}_p{level}", reset_less=key != "valid")
                    for key, v in side.items()}

        stage(0)
        for level in range(1, tree_depth(n) + 1):
            trees = [add_terms(m, terms, max_bits=nbits, level=level, name=f"t{k}") for k, terms in enumerate(trees)]
            stage(level)
        sums = [terms[0] for terms in trees]          # one (x, c) per tree
        if grouped:
            scale = self._multiply if self._dp.arch == "mul" else self._shift
            sums, sel = scale(m, sums[0], side.pop("exp"))
            if sel is not None:
                side["sel"] = sel
            trees = [sums]
            stage(self._n_levels - 1)
            sums = [trees[0][0]]
            sel = side.get("sel")
        else:
            sel = None
        self._accumulate(m, sums, sel, side)
        return m

    def _lanes_terms(self, m):
        """Level 0: the lanes, as one list of ``(x, c)`` terms per adder tree."""
        dp, n = self._dp, self._lanes
        ab = dp.a_bits
        terms = []
        if self._schedule == "grouped":
            for i in range(n):
                lane = SignLane(dp)
                m.submodules[f"lane{i}"] = lane
                m.d.comb += [lane.a.eq(self.a[i * ab:(i + 1) * ab]), lane.neg.eq(self.neg[i])]
                terms.append((lane.x, lane.c))
            return [terms]
        sb = dp.storage_bits
        lanes = []
        for i in range(n):
            lane = make_lane(dp)
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [lane.a.eq(self.a[i * ab:(i + 1) * ab]), lane.w.eq(self.w[i * sb:(i + 1) * sb])]
            lanes.append(lane)
        if dp.arch != "split":
            return [[(lane.x, lane.c) for lane in lanes]]
        trees = [[], []]
        for i, lane in enumerate(lanes):
            for k in (0, 1):
                on = lane.k if k else ~lane.k
                x = Signal(signed(lane.width), name=f"lane{i}_x{k}")
                c = Signal(name=f"lane{i}_c{k}")
                m.d.comb += [x.eq(lane.x & on.replicate(lane.width)), c.eq(lane.c & on)]
                trees[k].append((x, c))
        return trees

    def _multiply(self, m, term, mag):
        """Grouped uniform: the beat sum ``x + c`` times the shared magnitude ``|q|``."""
        nbits = self._acc_bits
        x, c = term
        total = Signal(signed(min(len(x) + 1, nbits)), name="beat_sum")
        y = Signal(signed(min(len(total) + len(mag), nbits)), name="beat_y")
        none = Signal(name="beat_c")        # the carry is inside beat_sum: none left over
        m.d.comb += [total.eq(x + c), y.eq(total * mag), none.eq(0)]
        return [(y, none)], None

    def _shift(self, m, term, exp):
        """Grouped: scale the beat sum ``x + c`` by the shared exponent."""
        dp, nbits = self._dp, self._acc_bits
        x, c = term
        top = dp.e_max if dp.arch == "shift" else dp.frac_bits
        # Right shift of the beat sum placed at the top shift: E_max - sh = W (pot),
        # S - sh = floor(W/2) (split).
        rsh = Signal(range(top + 1), name="beat_rsh")
        sel = None
        if dp.arch == "shift":
            m.d.comb += rsh.eq(exp)
        else:
            m.d.comb += rsh.eq(exp >> 1)
            if len(exp):
                sel = Signal(name="beat_k")
                m.d.comb += sel.eq(exp[0])
            # E_max = 0: no odd exponent, the odd accumulator only ever clears (no constant
            # select, which yosys would write as an incomplete case statement)
        y = Signal(signed(min(len(x) + top, nbits)), name="beat_y")
        if top:
            # x * 2^top + c * (2^top - 1), shifted right by rsh: (x << sh) with the
            # vacated bits filled with c.
            m.d.comb += y.eq(Cat(c.replicate(top), x).as_signed() >> rsh)
        else:
            m.d.comb += y.eq(x)
        return [(y, c)], sel

    def _accumulate(self, m, sums, sel, side):
        """Accumulators: ``acc_k <= (first ? 0 : acc_k) + y_k + c_k``.

        Grouped ``split`` adds each beat to one accumulator only (``k = W mod 2``),
        so both share one adder: ``(first ? 0 : acc_sel) + y + c`` is written to
        ``acc_sel`` and the other accumulator is cleared on ``first``.
        """
        dp, nbits = self._dp, self._acc_bits
        valid, first = side["valid"], side["first"]
        # Reset-less: a dot product always starts with ``first``, and a reset that the
        # beat logic must override costs a multiplexer per bit.
        accs = [Signal(signed(nbits), name=f"acc{k}", reset_less=True) for k in range(dp.n_acc)]
        if sel is None:
            for acc, (y, c) in zip(accs, sums):
                with m.If(valid):
                    m.d.sync += acc.eq(Mux(first, 0, acc) + y + c)
            for acc in accs[len(sums):]:          # grouped split with E_max = 0: acc1 stays 0
                with m.If(valid & first):
                    m.d.sync += acc.eq(0)
        else:
            (y, c), = sums
            base = Signal(signed(nbits), name="acc_base")
            total = Signal(signed(nbits), name="acc_sum", attrs={"keep": 1})
            m.d.comb += [base.eq(Mux(first, 0, Mux(sel, accs[1], accs[0]))), total.eq(base + y + c)]
            for k, acc in enumerate(accs):
                with m.If(valid):
                    with m.If(sel if k else ~sel):
                        m.d.sync += acc.eq(total)
                    with m.Elif(first):
                        m.d.sync += acc.eq(0)
        out_valid = Signal(name="out_valid_r")
        m.d.sync += out_valid.eq(valid & side["last"])
        m.d.comb += [self.acc.eq(Cat(*accs)), self.out_valid.eq(out_valid)]
