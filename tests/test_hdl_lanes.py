"""Product lanes against a direct reading of docs/datapath.md section 4.

Exhaustive over every (activation code, weight code) pair for b_a, b_w <= 4 (both E_max
choices, signed and unsigned activations), randomised at 8 bits.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from asqhw.core.params import Datapath
from spec_reading import spec_product
from asqhw.hdl.lanes import LutLane, SignLane, lut_table, make_lane, product_bits


def all_weight_codes(dp):
    if dp.fmt == "uniform":
        lo, hi = dp.w_range
        return list(range(lo, hi + 1))
    return [(s << dp.m_bits) | m for s in (0, 1) for m in range(dp.e_max + 2)]


def rtl_products(dp, pairs):
    """(p, x + c, k) of the lane for each (a, code) pair."""
    lane = make_lane(dp)
    out = []
    amask = (1 << dp.a_bits) - 1
    wmask = (1 << dp.storage_bits) - 1

    async def bench(ctx):
        for a, code in pairs:
            ctx.set(lane.a, a & amask)
            ctx.set(lane.w, code & wmask)
            k = ctx.get(lane.k) if dp.arch == "split" else 0
            out.append((ctx.get(lane.p), ctx.get(lane.x) + ctx.get(lane.c), k))

    sim = Simulator(lane)
    sim.add_testbench(bench)
    sim.run()
    return out


def check_exhaustive(dp):
    lo, hi = dp.a_range
    pairs = [(a, code) for a in range(lo, hi + 1) for code in all_weight_codes(dp)]
    want = [(p, p, k) for p, k in (spec_product(dp, a, code) for a, code in pairs)]
    assert rtl_products(dp, pairs) == want


def small_configs(fmt, arch=None):
    out = []
    for b_a in (2, 3, 4):
        for b_w in (2, 3, 4):
            for a_signed in (False, True):
                if fmt == "uniform":
                    out.append(dict(fmt=fmt, a_bits=b_a, w_bits=b_w, a_signed=a_signed))
                    continue
                for e_max in (2 ** (b_w - 1) - 2, 2 ** (b_w - 1) - 1):
                    out.append(dict(fmt=fmt, arch=arch, a_bits=b_a, w_bits=b_w, a_signed=a_signed, e_max=e_max))
    return out


def _name(cfg):
    return "-".join(f"{k}={v}" for k, v in cfg.items() if k not in ("fmt", "arch"))


@pytest.mark.parametrize("cfg", small_configs("uniform"), ids=_name)
def test_mul_lane_is_exact_product_for_every_code_pair(cfg):
    check_exhaustive(Datapath(**cfg))


@pytest.mark.parametrize("cfg", small_configs("pot"), ids=_name)
def test_shift_lane_matches_spec_for_every_code_pair(cfg):
    check_exhaustive(Datapath(**cfg))


@pytest.mark.parametrize("cfg", small_configs("post", "lut"), ids=_name)
def test_lut_lane_matches_spec_for_every_code_pair(cfg):
    check_exhaustive(Datapath(**cfg))


@pytest.mark.parametrize("cfg", small_configs("post", "split"), ids=_name)
def test_split_lane_matches_spec_for_every_code_pair(cfg):
    check_exhaustive(Datapath(**cfg))


@pytest.mark.parametrize("frac_bits", [3, 6, 16])
def test_lut_lane_honours_frac_bits(frac_bits):
    check_exhaustive(Datapath(fmt="post", arch="lut", a_bits=4, w_bits=4, e_max=6, frac_bits=frac_bits, a_signed=True))


@pytest.mark.parametrize("cfg", [
    dict(fmt="uniform", a_bits=8, w_bits=8),
    dict(fmt="uniform", a_bits=8, w_bits=8, a_signed=True),
    dict(fmt="pot", a_bits=8, w_bits=8),
    dict(fmt="pot", a_bits=8, w_bits=8, e_max=127, a_signed=True),
    dict(fmt="post", arch="lut", a_bits=8, w_bits=8, e_max=30, frac_bits=16, a_signed=True),
    dict(fmt="post", arch="lut", a_bits=8, w_bits=6, e_max=31, frac_bits=16),
    dict(fmt="post", arch="split", a_bits=8, w_bits=8),
    dict(fmt="post", arch="split", a_bits=8, w_bits=8, e_max=127, a_signed=True),
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_eight_bit_lanes_match_spec_on_random_codes(cfg):
    dp = Datapath(**cfg)
    rng = random.Random(8)
    lo, hi = dp.a_range
    codes = all_weight_codes(dp)
    pairs = [(rng.randint(lo, hi), rng.choice(codes)) for _ in range(400)]
    pairs += [(lo, c) for c in codes] + [(hi, c) for c in codes]
    want = [(p, p, k) for p, k in (spec_product(dp, a, code) for a, code in pairs)]
    assert rtl_products(dp, pairs) == want


def test_lut_table_rows_are_odd_exponents_and_odd_symmetric():
    dp = Datapath(fmt="post", arch="lut", a_bits=4, w_bits=4, a_signed=True)
    table = lut_table(dp)
    assert sorted(table) == [1, 3, 5]
    for row in table.values():
        assert all(row[u] == -row[(-u) & 15] for u in range(1, 8))


def test_lut_table_entries_round_to_nearest():
    # LUT[1][A] = round(A * 2^(F - 1/2)); F = 5 (default for E_max = 6): A=3 -> 3*22.627 = 67.88 -> 68.
    dp = Datapath(fmt="post", arch="lut", a_bits=4, w_bits=4)
    assert lut_table(dp)[1][3] == 68


def test_product_width_holds_p_max():
    dp = Datapath(fmt="pot", a_bits=4, w_bits=4)
    assert product_bits(dp) == (15 << 6).bit_length() + 1


@pytest.mark.parametrize("a_signed", [False, True])
def test_sign_lane_negates_every_code(a_signed):
    dp = Datapath(fmt="post", arch="split", a_bits=4, w_bits=4, a_signed=a_signed)
    lane = SignLane(dp)
    lo, hi = dp.a_range
    got = []

    async def bench(ctx):
        for a in range(lo, hi + 1):
            for neg in (0, 1):
                ctx.set(lane.a, a & 15)
                ctx.set(lane.neg, neg)
                got.append((ctx.get(lane.p), ctx.get(lane.x) + ctx.get(lane.c)))

    sim = Simulator(lane)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(v, v) for a in range(lo, hi + 1) for v in (a, -a)]


def test_lane_rejects_wrong_arch():
    with pytest.raises(ValueError, match="'split'"):
        LutLane(Datapath(fmt="post", arch="split", a_bits=4, w_bits=4))
