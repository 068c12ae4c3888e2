# amaranth: UnusedElaboratable=no
"""Requantiser RTL against a Python reading of docs/datapath.md section 6."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from asqhw.hdl.requant import Requantiser


def ref_requant(acc, m, b, sh, lo, hi):
    """docs/datapath.md section 6 on Python integers (ties toward +infinity)."""
    t = sum(mk * ak for mk, ak in zip(m, acc)) + b
    r = (t + (1 << (sh - 1))) >> sh if sh >= 1 else t
    return min(max(r, lo), hi)


def pack(values, bits):
    word = 0
    for i, v in enumerate(values):
        word |= (v & ((1 << bits) - 1)) << (i * bits)
    return word


def rtl_requant(dut, vectors, arrivals=None):
    """Drive one vector per cycle (back to back); return the y codes in order.

    ``arrivals`` (a list) receives the cycle index of each ``y_valid``.
    """
    out = []

    async def bench(ctx):
        ctx.set(dut.valid, 0)
        await ctx.tick()
        pending = list(vectors)
        cycles = 0
        while len(out) < len(vectors):
            if pending:
                acc, m, b, sh = pending.pop(0)
                ctx.set(dut.valid, 1)
                ctx.set(dut.acc, pack(acc, dut.acc_bits))
                ctx.set(dut.m, pack(m, 16))
                ctx.set(dut.b, b)
                ctx.set(dut.sh, sh)
            else:
                ctx.set(dut.valid, 0)
            if ctx.get(dut.y_valid):
                out.append(ctx.get(dut.y))
                if arrivals is not None:
                    arrivals.append(cycles)
            await ctx.tick()
            cycles += 1
            assert cycles < len(vectors) + 10, "y_valid missing"

    top = Module()  # a sync domain even when the requantiser has no registers
    top.submodules.dut = dut
    tick = Signal()
    top.d.sync += tick.eq(~tick)
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def edge_vectors(n_acc, acc_bits, rng, count):
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    bmin, bmax = -(1 << 47), (1 << 47) - 1
    accs = [amin, amax, 0, -1, 1]
    vecs = []
    for a in accs:
        for mk in (0, 1, 65535):
            for b in (bmin, bmax, 0, -1):
                for sh in (0, 1, 62):
                    vecs.append(([a] * n_acc, [mk] * n_acc, b, sh))
    # exact ties at several shifts, positive and negative t
    for sh in (1, 2, 5, 17, 40):
        for base in (-3, -2, -1, 0, 1, 2):
            t = (base << sh) + (1 << (sh - 1))
            vecs.append(([0] * n_acc, [0] * n_acc, t, sh))
            vecs.append(([0] * n_acc, [0] * n_acc, t - 1, sh))
    for _ in range(count):
        vecs.append(([rng.randint(amin, amax) for _ in range(n_acc)],
                     [rng.randint(0, 65535) for _ in range(n_acc)],
                     rng.choice([rng.randint(bmin, bmax), rng.randint(-1000, 1000)]),
                     rng.randint(0, 62)))
    return vecs


def check(n_acc, acc_bits, out_bits, out_signed, pipeline, seed=0, count=200):
    dut = Requantiser(n_acc=n_acc, acc_bits=acc_bits, out_bits=out_bits, out_signed=out_signed,
                      pipeline=pipeline)
    lo, hi = dut.out_range
    vecs = edge_vectors(n_acc, acc_bits, random.Random(seed), count)
    got = rtl_requant(dut, vecs)
    want = [ref_requant(*v, lo, hi) for v in vecs]
    mism = [(v, g, w) for v, g, w in zip(vecs, got, want) if g != w]
    assert not mism, f"{len(mism)} mismatches, first {mism[0]}"


@pytest.mark.parametrize("pipeline", [0, 1, 2, 3])
def test_every_pipeline_depth_matches_spec(pipeline):
    check(1, 20, 8, True, pipeline)


@pytest.mark.parametrize("out_signed", [False, True])
def test_two_accumulators_at_max_width_match_spec(out_signed):
    check(2, 40, 16 if out_signed else 15, out_signed, 1)


def test_unsigned_output_clamps_negative_t_to_zero():
    check(1, 16, 4, False, 1, seed=3)


def test_ties_round_toward_plus_infinity():
    dut = Requantiser(n_acc=1, acc_bits=8, out_bits=16, out_signed=True, pipeline=1)
    vecs = [([0], [0], 5, 1), ([0], [0], -5, 1), ([0], [0], -3, 1), ([0], [0], 6, 2), ([0], [0], -6, 2)]
    assert rtl_requant(dut, vecs) == [3, -2, -1, 2, -1]


def test_shift_zero_passes_t_unchanged():
    dut = Requantiser(n_acc=2, acc_bits=10, out_bits=16, out_signed=True, pipeline=0)
    assert rtl_requant(dut, [([7, -3], [100, 5], -12, 0)]) == [7 * 100 - 15 - 12]


def test_shift_62_rounds_huge_t():
    dut = Requantiser(n_acc=2, acc_bits=40, out_bits=16, out_signed=True, pipeline=2)
    acc = [-(1 << 39), -(1 << 39)]
    vecs = [(acc, [65535, 65535], -(1 << 47), 62), ([(1 << 39) - 1] * 2, [65535] * 2, (1 << 47) - 1, 62)]
    want = [ref_requant(*v, -32768, 32767) for v in vecs]
    assert rtl_requant(dut, vecs) == want


def test_saturates_at_both_ends():
    dut = Requantiser(n_acc=1, acc_bits=12, out_bits=4, out_signed=True, pipeline=1)
    assert rtl_requant(dut, [([2047], [65535], 0, 3), ([-2048], [65535], 0, 3)]) == [7, -8]


@pytest.mark.parametrize("pipeline", [0, 1, 2, 3])
def test_y_valid_arrives_latency_cycles_after_valid(pipeline):
    dut = Requantiser(n_acc=1, acc_bits=8, out_bits=4, out_signed=False, pipeline=pipeline)
    arrivals = []
    rtl_requant(dut, [([1], [1], 0, 0)], arrivals)
    assert dut.latency == pipeline
    assert arrivals == [dut.latency]


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="acc_bits"):
        Requantiser(n_acc=1, acc_bits=41, out_bits=4, out_signed=False)
    with pytest.raises(ValueError, match="n_acc"):
        Requantiser(n_acc=3, acc_bits=8, out_bits=4, out_signed=False)
