"""The RTL contract of docs/rtl.md that the spec-equality tests do not pin down: reset and strobes."""

from __future__ import annotations

from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from asqhw.core.params import Datapath
from asqhw.hdl.dot import DotUnit
from spec_reading import spec_product, spec_wrap

DP = Datapath("uniform", 4, 4)


def _run(unit, script):
    """Drive ``script`` (port values per cycle; ``rst`` asserts the synchronous reset that cycle).

    Returns ``(cycle, acc)`` of every cycle with ``out_valid`` high.
    """
    rst = Signal()
    top = ResetInserter(rst)(unit)
    seen = []

    async def bench(ctx):
        for cycle, values in enumerate(script + [{}] * (unit.latency + 2)):
            for name in ("valid", "first", "last", "a", "w"):
                ctx.set(getattr(unit, name), values.get(name, 0))
            ctx.set(rst, values.get("rst", 0))
            if ctx.get(unit.out_valid):
                seen.append((cycle, spec_wrap(ctx.get(unit.acc), unit.acc_bits)))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def _beat(a, w, first=0, last=0, valid=1, rst=0):
    return {"valid": valid, "first": first, "last": last, "a": a & 0xF, "w": w & 0xF, "rst": rst}


def _dot(pairs):
    return spec_wrap(sum(spec_product(DP, a, w)[0] for a, w in pairs), 12)


def test_first_and_last_are_ignored_while_valid_is_low():
    unit = DotUnit(DP, lanes=1, acc_bits=12, pipeline=1)
    script = [_beat(3, 2, first=1), _beat(9, 7, first=1, last=1, valid=0), _beat(5, -3, last=1)]
    assert _run(unit, script) == [(2 + unit.latency, _dot([(3, 2), (5, -3)]))]


def test_reset_drops_a_dot_product_in_flight_and_the_next_one_is_exact():
    unit = DotUnit(DP, lanes=2, acc_bits=12, pipeline=2)
    script = [_beat(3, 2, first=1), _beat(4, 5, last=1, rst=1),          # reset with the last beat
              _beat(7, -8, first=1), _beat(15, 7, last=1)]
    assert _run(unit, script) == [(3 + unit.latency, _dot([(7, -8), (15, 7)]))]
