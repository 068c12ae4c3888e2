"""hdl.schedule: beats cover every nonzero term exactly once; cycles counts them."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from asqhw.core.params import Datapath
from asqhw.hdl.schedule import beats, cycles

SPLIT = Datapath(fmt="post", arch="split", a_bits=4, w_bits=4)
POT = Datapath(fmt="pot", a_bits=3, w_bits=3, a_signed=True)
UNIFORM = Datapath(fmt="uniform", a_bits=4, w_bits=4)


def unpack(value, bits, n, signed=False):
    out = []
    for i in range(n):
        v = (value >> (i * bits)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def random_terms(dp, rng, k):
    lo, hi = dp.a_range
    a = [rng.randint(lo, hi) for _ in range(k)]
    if dp.fmt == "uniform":
        w = [rng.randint(*dp.w_range) for _ in range(k)]
    else:
        w = [(rng.randint(0, 1) << dp.m_bits) | rng.randint(0, dp.e_max + 1) for _ in range(k)]
    return a, w


def grouped_terms(dp, lanes, bs):
    """Multiset of (A, sgn, W) carried by grouped beats (lanes with a = 0 and neg = 0 are padding)."""
    got = Counter()
    for b in bs:
        for a, neg in zip(unpack(b["a"], dp.a_bits, lanes, dp.a_signed), unpack(b["neg"], 1, lanes)):
            if a:
                got[(a, neg, b["mag"] if dp.fmt == "uniform" else b["exp"])] += 1
    return got


@pytest.mark.parametrize("dp", [SPLIT, POT, UNIFORM], ids=["split", "pot-signed", "uniform"])
@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_grouped_beats_carry_every_nonzero_term_once(dp, lanes):
    rng = random.Random(lanes)
    a, w = random_terms(dp, rng, 50)
    a = [v or 1 for v in a]                           # nonzero A: every lane that carries a term shows
    want = Counter()
    for av, code in zip(a, w):
        if dp.fmt == "uniform":
            if code:
                want[(av, int(code < 0), abs(code))] += 1
            continue
        m = code & ((1 << dp.m_bits) - 1)
        if m:
            want[(av, code >> dp.m_bits, m - 1)] += 1
    assert grouped_terms(dp, lanes, beats(dp, lanes, "grouped", a, w)) == want


def test_grouped_beats_share_one_exponent_and_fill_lanes():
    a, w = [1, 2, 3, 4, 5], [1, 2, 1, 2, 1]          # W = 0, 1, 0, 1, 0
    bs = beats(SPLIT, 2, "grouped", a, w)
    assert [(b["exp"], unpack(b["a"], 4, 2)) for b in bs] == [(0, [1, 3]), (0, [5, 0]), (1, [2, 4])]


@pytest.mark.parametrize("dp", [SPLIT, POT, UNIFORM], ids=["split", "pot", "uniform"])
@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_any_beats_are_the_terms_in_order_padded_with_zero(dp, lanes):
    rng = random.Random(3)
    a, w = random_terms(dp, rng, 37)
    bs = beats(dp, lanes, "any", a, w)
    signed_w = dp.fmt == "uniform"
    got_a = [v for b in bs for v in unpack(b["a"], dp.a_bits, lanes, dp.a_signed)]
    got_w = [v for b in bs for v in unpack(b["w"], dp.storage_bits, lanes, signed_w)]
    pad = len(got_a) - len(a)
    assert 0 <= pad < lanes
    assert (got_a, got_w) == (a + [0] * pad, w + [0] * pad)


@pytest.mark.parametrize("schedule, dp", [("any", UNIFORM), ("any", SPLIT), ("grouped", SPLIT), ("grouped", POT),
                                          ("grouped", UNIFORM)])
@pytest.mark.parametrize("lanes", [1, 5, 8])
def test_cycles_is_number_of_beats(schedule, dp, lanes):
    rng = random.Random(lanes)
    for k in (1, 7, 40):
        a, w = random_terms(dp, rng, k)
        assert cycles(dp, lanes, schedule, a, w) == len(beats(dp, lanes, schedule, a, w))


def test_grouped_cycles_sum_ceil_per_exponent_and_skip_zero_weights():
    # 5 terms with W = 0, 3 with W = 2, 4 zero weights, 8 lanes: 1 + 1 beats, not ceil(12 / 8).
    w = [1] * 5 + [3] * 3 + [0, 8, 0, 8]
    assert cycles(SPLIT, 8, "grouped", [1] * 12, w) == 2
    assert cycles(SPLIT, 4, "grouped", [1] * 12, w) == 3
    assert cycles(SPLIT, 4, "any", [1] * 12, w) == 3


def test_uniform_grouped_beats_share_one_magnitude_in_increasing_order():
    a, w = [1, 2, 3, 4, 5, 6], [3, -3, 0, -8, 1, 3]
    bs = beats(UNIFORM, 2, "grouped", a, w)
    assert [(b["mag"], unpack(b["a"], 4, 2), unpack(b["neg"], 1, 2)) for b in bs] == [
        (1, [5, 0], [0, 0]), (3, [1, 2], [0, 1]), (3, [6, 0], [0, 0]), (8, [4, 0], [1, 0])]


def test_uniform_grouped_cycles_sum_ceil_per_magnitude_and_skip_zero_weights():
    # |q| = 1: 5 terms, |q| = 2: 3 terms (signs mixed), 4 zero weights.
    w = [1, -1, 1, -1, 1, 2, -2, 2, 0, 0, 0, 0]
    assert cycles(UNIFORM, 8, "grouped", [1] * 12, w) == 2
    assert cycles(UNIFORM, 4, "grouped", [1] * 12, w) == 3
    assert cycles(UNIFORM, 16, "grouped", [1] * 12, w) == 2      # 2 magnitudes: 2 beats at least
    assert cycles(UNIFORM, 16, "any", [1] * 12, w) == 1
    assert cycles(UNIFORM, 4, "grouped", [1] * 3, [0] * 3) == 1


def test_uniform_grouped_beats_per_dot_product_are_at_most_one_per_magnitude_over_dense():
    # K' nonzero terms over G distinct magnitudes: ceil(K'/lanes) <= beats <= ceil(K'/lanes) + G - 1.
    rng = random.Random(9)
    for lanes in (1, 4, 16):
        a, w = random_terms(UNIFORM, rng, 60)
        nz = [q for q in w if q]
        g = len({abs(q) for q in nz})
        n = cycles(UNIFORM, lanes, "grouped", a, w)
        assert -(-len(nz) // lanes) <= n <= -(-len(nz) // lanes) + g - 1


def test_first_and_last_flags_mark_the_ends():
    bs = beats(SPLIT, 2, "any", [1] * 5, [1] * 5)
    assert [(b["valid"], b["first"], b["last"]) for b in bs] == [(1, 1, 0), (1, 0, 0), (1, 0, 1)]


def test_all_zero_weights_are_one_zero_beat():
    assert beats(SPLIT, 8, "grouped", [3, 4], [0, 8]) == [
        {"a": 0, "neg": 0, "exp": 0, "valid": 1, "first": 1, "last": 1}]


def test_all_zero_uniform_weights_are_one_zero_beat():
    assert beats(UNIFORM, 8, "grouped", [3, 4], [0, 0]) == [
        {"a": 0, "neg": 0, "mag": 0, "valid": 1, "first": 1, "last": 1}]


def test_grouped_schedule_rejects_post_lut():
    lut = Datapath(fmt="post", arch="lut", a_bits=4, w_bits=4)
    with pytest.raises(ValueError, match="grouped"):
        beats(lut, 8, "grouped", [1], [1])


def test_out_of_range_codes_are_rejected():
    with pytest.raises(ValueError, match="activation code 16"):
        beats(SPLIT, 8, "any", [16], [1])
    with pytest.raises(ValueError, match="weight code 16"):
        beats(SPLIT, 8, "any", [1], [16])
    small = Datapath(fmt="pot", a_bits=3, w_bits=3, e_max=1)
    with pytest.raises(ValueError, match="weight code 7"):
        beats(small, 8, "any", [1], [7])      # m = 3 > E_max + 1 = 2
