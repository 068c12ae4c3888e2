"""DotUnit against a Python integer dot product read directly from docs/datapath.md."""

from __future__ import annotations

import random
import re

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from spec_reading import spec_product, spec_wrap
from asqhw.hdl.dot import DotUnit
from asqhw.hdl.schedule import beats


def ref_dot(dp, acc_bits, a_vec, w_vec):
    acc = [0] * dp.n_acc
    for a, code in zip(a_vec, w_vec):
        p, k = spec_product(dp, a, code)
        acc[k] += p
    return [spec_wrap(v, acc_bits) for v in acc]


def random_codes(dp, rng, k, zero_frac=0.2):
    lo, hi = dp.a_range
    a = [rng.randint(lo, hi) for _ in range(k)]
    if dp.fmt == "uniform":
        lo, hi = dp.w_range
        w = [rng.randint(lo, hi) for _ in range(k)]
    else:
        w = [(rng.randint(0, 1) << dp.m_bits) | (0 if rng.random() < zero_frac else rng.randint(1, dp.e_max + 1))
             for _ in range(k)]
    return a, w


def rtl_dots(unit, dots, idle_every=0):
    """Run dot products back to back (an idle cycle after every ``idle_every``-th beat if > 0).

    Returns (acc list, cycle of out_valid) per finished dot product and the cycles of the
    ``last`` beats.
    """
    dp, nb = unit.dp, unit.acc_bits
    stream = []
    for a, w in dots:
        for b in beats(dp, unit.lanes, unit.schedule, a, w):
            stream.append(b)
            if idle_every and len(stream) % (idle_every + 1) == idle_every:
                stream.append(None)
    results, last_cycles = [], []

    async def bench(ctx):
        cycle = 0
        pending = stream + [None] * (unit.latency + 1)
        for beat in pending:
            if beat is None:
                ctx.set(unit.valid, 0)
                ctx.set(unit.last, 0)
            else:
                for key, value in beat.items():
                    ctx.set(getattr(unit, key), value)
                if beat["last"]:
                    last_cycles.append(cycle)
            if ctx.get(unit.out_valid):
                raw = ctx.get(unit.acc)
                results.append(([spec_wrap((raw >> (k * nb)) & ((1 << nb) - 1), nb) for k in range(dp.n_acc)], cycle))
            await ctx.tick()
            cycle += 1

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, last_cycles


CONFIGS = [
    dict(fmt="uniform", a_bits=4, w_bits=4),
    dict(fmt="uniform", a_bits=3, w_bits=2, a_signed=True),
    dict(fmt="pot", a_bits=4, w_bits=4),
    dict(fmt="pot", a_bits=4, w_bits=3, e_max=3, a_signed=True),
    dict(fmt="post", a_bits=4, w_bits=4, arch="lut"),
    dict(fmt="post", a_bits=3, w_bits=3, arch="lut", e_max=3, frac_bits=4, a_signed=True),
    dict(fmt="post", a_bits=4, w_bits=4, arch="split"),
    dict(fmt="post", a_bits=4, w_bits=3, arch="split", e_max=3, a_signed=True),
    dict(fmt="pot", a_bits=2, w_bits=2),                                  # E_max = 0
    dict(fmt="post", a_bits=3, w_bits=2, arch="split", e_max=1),          # S = 0
    dict(fmt="post", a_bits=3, w_bits=2, arch="split"),                   # E_max = 0: no odd exponent
]
GROUPED = [c for c in CONFIGS if c.get("arch") != "lut"]    # uniform, pot and post split
UNIFORM_GROUPED = [c for c in GROUPED if c["fmt"] == "uniform"]


def _name(cfg):
    return "-".join(f"{k}={v}" for k, v in cfg.items())


def check_unit(unit, seed, n_dots=4, max_k=40, idle_every=0):
    rng = random.Random(seed)
    dots = [random_codes(unit.dp, rng, rng.randint(1, max_k)) for _ in range(n_dots)]
    results, last_cycles = rtl_dots(unit, dots, idle_every)
    assert [r[0] for r in results] == [ref_dot(unit.dp, unit.acc_bits, a, w) for a, w in dots]
    assert [r[1] for r in results] == [c + unit.latency for c in last_cycles]


@pytest.mark.parametrize("cfg", CONFIGS, ids=_name)
@pytest.mark.parametrize("lanes", [1, 8])
def test_any_schedule_matches_spec_dot_product(cfg, lanes):
    dp = Datapath(**cfg)
    check_unit(DotUnit(dp, lanes=lanes, acc_bits=dp.natural_acc_bits(40), schedule="any"), seed=lanes)


@pytest.mark.parametrize("cfg", GROUPED, ids=_name)
@pytest.mark.parametrize("lanes", [1, 8])
def test_grouped_schedule_matches_spec_dot_product(cfg, lanes):
    dp = Datapath(**cfg)
    check_unit(DotUnit(dp, lanes=lanes, acc_bits=dp.natural_acc_bits(40), schedule="grouped"), seed=lanes + 1)


@pytest.mark.parametrize("schedule", ["any", "grouped"])
@pytest.mark.parametrize("pipeline", [0, 1, 2, 4])
def test_pipeline_depth_keeps_results_and_latency(schedule, pipeline):
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
    check_unit(DotUnit(dp, lanes=8, acc_bits=14, schedule=schedule, pipeline=pipeline), seed=pipeline)


WRAP_CASES = [(c, "any") for c in CONFIGS[::2]] + [(c, "grouped") for c in GROUPED[::2]]


@pytest.mark.parametrize("cfg, schedule", WRAP_CASES, ids=[f"{_name(c)}-{s}" for c, s in WRAP_CASES])
def test_narrow_accumulator_wraps_modulo_2_to_acc_bits(cfg, schedule):
    dp = Datapath(**cfg)
    check_unit(DotUnit(dp, lanes=8, acc_bits=5, schedule=schedule), seed=7, max_k=64)


SIXTEEN = [(CONFIGS[0], "any"), (CONFIGS[0], "grouped"), (CONFIGS[2], "any"), (CONFIGS[2], "grouped"), (CONFIGS[4], "any"),
           (CONFIGS[6], "any"), (CONFIGS[6], "grouped")]


@pytest.mark.parametrize("cfg, schedule", SIXTEEN, ids=[f"{_name(c)}-{s}" for c, s in SIXTEEN])
def test_sixteen_lanes(cfg, schedule):
    dp = Datapath(**cfg)
    check_unit(DotUnit(dp, lanes=16, acc_bits=dp.natural_acc_bits(80), schedule=schedule), seed=16, max_k=80)


@pytest.mark.parametrize("schedule", ["any", "grouped"])
@pytest.mark.parametrize("pipeline", [0, 2])
def test_idle_cycles_between_beats_change_nothing(schedule, pipeline):
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split", a_signed=True)
    check_unit(DotUnit(dp, lanes=4, acc_bits=14, schedule=schedule, pipeline=pipeline), seed=5, idle_every=2)


def test_all_zero_weights_give_zero_in_grouped_schedule():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
    unit = DotUnit(dp, lanes=8, acc_bits=12, schedule="grouped")
    results, _ = rtl_dots(unit, [([5, 7], [1, 8]), ([0, 9, 3], [0, 0, 8])])
    assert [r[0] for r in results] == [ref_dot(dp, 12, [5, 7], [1, 8]), [0, 0]]


def test_latency_is_pipeline_plus_one():
    dp = Datapath(fmt="uniform", a_bits=4, w_bits=4)
    units = [DotUnit(dp, lanes=8, acc_bits=16, pipeline=p) for p in range(4)]
    for unit in units:
        Fragment.get(unit, None)
    assert [unit.latency for unit in units] == [1, 2, 3, 4]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lanes=0, acc_bits=16), ValueError, "lanes must be in 1..1024, not 0"),
    (dict(lanes=8.0, acc_bits=16), UserError, "lanes must be an integer, not 8.0"),
    (dict(lanes=8, acc_bits=41), ValueError, "acc_bits must be in 2..40, not 41"),
    (dict(lanes=8, acc_bits=16, schedule="fast"), ValueError, "not 'fast'"),
    (dict(lanes=8, acc_bits=16, pipeline=9), ValueError, "pipeline must be in 0..4, not 9"),
])
def test_bad_parameters_are_rejected_by_name(kwargs, error, message):
    dp = Datapath(fmt="pot", a_bits=4, w_bits=4)
    with pytest.raises(error, match=re.escape(message)):
        DotUnit(dp, **kwargs)


def test_grouped_schedule_rejects_lut():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut")
    with pytest.raises(ValueError, match="grouped"):
        DotUnit(dp, lanes=8, acc_bits=16, schedule="grouped")


@pytest.mark.parametrize("cfg", UNIFORM_GROUPED, ids=_name)
def test_uniform_grouped_matches_spec_for_every_weight_and_activation_code(cfg):
    # Every (A, q) pair of the format, including q = -2^(b_w-1), in one long dot product
    # and one pair per dot product (a single beat scaled by |q|).
    dp = Datapath(**cfg)
    pairs = [(a, q) for a in range(dp.a_range[0], dp.a_range[1] + 1)
             for q in range(dp.w_range[0], dp.w_range[1] + 1)]
    dots = [([a for a, _ in pairs], [q for _, q in pairs])] + [([a], [q]) for a, q in pairs]
    for lanes, pipeline in ((3, 0), (8, 2)):
        acc_bits = dp.natural_acc_bits(len(pairs))
        unit = DotUnit(dp, lanes=lanes, acc_bits=acc_bits, schedule="grouped", pipeline=pipeline)
        results, _ = rtl_dots(unit, dots)
        assert [r[0] for r in results] == [ref_dot(dp, acc_bits, a, w) for a, w in dots]


def test_uniform_grouped_check_fails_on_a_wrong_magnitude():
    # The comparison can fail: one beat sent with |q| + 1 changes the result.
    dp = Datapath(fmt="uniform", a_bits=4, w_bits=4)
    unit = DotUnit(dp, lanes=4, acc_bits=12, schedule="grouped")
    a, w = [3, 5, 7], [2, -2, 5]
    bs = beats(dp, 4, "grouped", a, w)
    bs[0]["mag"] += 1
    got = []

    async def bench(ctx):
        for beat in bs + [None] * (unit.latency + 1):
            for key, value in (beat or {"valid": 0, "last": 0}).items():
                ctx.set(getattr(unit, key), value)
            if ctx.get(unit.out_valid):
                got.append(spec_wrap(ctx.get(unit.acc), 12))
            await ctx.tick()

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [ref_dot(dp, 12, a, w)[0] + 3 - 5]


def test_dp_must_be_a_datapath():
    with pytest.raises(TypeError, match="Datapath"):
        DotUnit("post", lanes=8, acc_bits=16)


@pytest.mark.parametrize("schedule", ["any", "grouped"])
@pytest.mark.parametrize("fmt", ["pot", "uniform"])
def test_pipeline_registers_sit_after_distinct_levels(schedule, fmt):
    dp = Datapath(fmt=fmt, a_bits=4, w_bits=4)
    for lanes in (1, 8, 16):
        levels = 1 + (lanes - 1).bit_length() + (schedule == "grouped")   # lanes, tree, shifter
        for p in range(levels + 1):
            unit = DotUnit(dp, lanes=lanes, acc_bits=16, schedule=schedule, pipeline=p)
            Fragment.get(unit, None)
            assert unit.max_pipeline == levels
            assert len(unit.cuts) == p
            assert list(unit.cuts) == sorted(set(unit.cuts))
            assert all(0 <= c < unit.max_pipeline for c in unit.cuts)
