"""golden.intref: the integer reference against hand examples and a per-element Python loop."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from asqhw.core.params import Datapath
from asqhw.golden import intref

DPS = {
    "uniform4": Datapath("uniform", 4, 4),
    "uniform3_signed": Datapath("uniform", 3, 3, a_signed=True),
    "pot4": Datapath("pot", 4, 4),
    "pot3_e3": Datapath("pot", 3, 3, e_max=3),
    "post4_lut": Datapath("post", 4, 4, arch="lut"),
    "post4_lut_F8_signed": Datapath("post", 4, 4, arch="lut", frac_bits=8, a_signed=True),
    "post4_e7_lut": Datapath("post", 3, 4, arch="lut", e_max=7),
    "post4_split": Datapath("post", 4, 4, arch="split"),
    "post3_e3_split_signed": Datapath("post", 3, 3, arch="split", e_max=3, a_signed=True),
}


# --- an independent per-element model written from docs/datapath.md ------------------
def spec_product(dp: Datapath, a: int, code: int) -> tuple[int, int]:
    """(P, k) of one activation code and weight code, from section 4, on Python ints."""
    if dp.fmt == "uniform":
        return a * code, 0
    m = code % (1 << dp.m_bits)
    sgn = code >> dp.m_bits
    if m == 0:
        return 0, 0
    w = m - 1
    sign = -1 if sgn else 1
    if dp.arch == "shift":
        return sign * a * 2 ** (dp.e_max - w), 0
    if dp.arch == "split":
        s = dp.frac_bits
        if w % 2 == 0:
            return sign * a * 2 ** (s - w // 2), 0
        return sign * a * 2 ** (s - (w - 1) // 2), 1
    f = dp.frac_bits
    if w % 2 == 0:
        return sign * a * 2 ** (f - w // 2), 0
    mag = (math.isqrt(a * a * 2 ** (2 * f - w + 2)) + 1) // 2
    return sign * (mag if a >= 0 else -mag), 0


def spec_wrap(v: int, n: int) -> int:
    return ((v + 2 ** (n - 1)) % 2**n) - 2 ** (n - 1)


def loop_conv(dp, x, w, stride, pad, groups, bits):
    n_, ci, h, wd = x.shape
    co, cig, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    acc = np.zeros((dp.n_acc, n_, co, ho, wo), dtype=np.int64)
    for n in range(n_):
        for c in range(co):
            g = c // (co // groups)
            for oy in range(ho):
                for ox in range(wo):
                    sums = [0] * dp.n_acc
                    for j in range(cig):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                                a = int(x[n, g * cig + j, iy, ix]) if 0 <= iy < h and 0 <= ix < wd else 0
                                p, k = spec_product(dp, a, int(w[c, j, ky, kx]))
                                sums[k] += p
                    for k in range(dp.n_acc):
                        acc[k, n, c, oy, ox] = spec_wrap(sums[k], bits)
    return acc


def random_codes(dp, rng, xshape, wshape):
    lo, hi = dp.a_range
    x = rng.integers(lo, hi + 1, xshape)
    if dp.fmt == "uniform":
        w = rng.integers(dp.w_range[0], dp.w_range[1] + 1, wshape)
    else:
        m = rng.integers(0, dp.e_max + 2, wshape)
        w = (rng.integers(0, 2, wshape) << dp.m_bits) | m
    return x.astype(np.int16), w.astype(np.int16)


# --- hand examples ------------------------------------------------------------------
def test_uniform_product_is_a_times_q():
    assert intref.products(DPS["uniform4"], [3], [-2])[0].tolist() == [-6]


def test_pot_product_is_a_shift_by_e_max_minus_w():
    dp = DPS["pot4"]  # E_max = 6, m_bits = 3
    p, k = intref.products(dp, [5, 5], [0b1001, 0b0011])  # -2^0, +2^-2
    assert p.tolist() == [-(5 << 6), 5 << 4] and k.tolist() == [0, 0]


def test_lut_products_round_a_times_sqrt2_powers_to_nearest():
    dp = Datapath("post", 4, 4, arch="lut", a_signed=True)  # F = 5
    # W = 1: 5 * 2^4.5 = 113.137 -> 113; W = 3: 5 * 2^3.5 = 56.57 -> 57; W = 2: 5 << 4 = 80
    p, _ = intref.products(dp, [5, -5, 5, 5, -5], [0b0010, 0b0010, 0b0100, 0b0011, 0b1010])
    assert p.tolist() == [113, -113, 57, 80, 113]


def test_activation_code_outside_the_range_is_rejected():
    with pytest.raises(ValueError, match="activation codes"):
        intref.products(DPS["post4_lut"], [-1], [2])


def test_lut_table_is_odd_symmetric_and_matches_the_isqrt_formula():
    dp = DPS["post4_lut_F8_signed"]
    t = intref.lut_table(dp).numpy()
    lo = dp.a_range[0]
    for w in range(1, dp.e_max + 1, 2):
        for a in range(1, dp.a_range[1] + 1):
            assert t[w, a - lo] == -t[w, -a - lo]
            assert abs(t[w, a - lo] - a * 2 ** (dp.frac_bits - w / 2)) < 0.5


def test_split_routes_odd_exponents_to_the_second_accumulator():
    dp = DPS["post4_split"]  # S = 3
    p, k = intref.products(dp, [5, 5, 5], [0b0011, 0b1100, 0b0001])  # W = 2, W = 3 (neg), W = 0
    assert p.tolist() == [5 << 2, -(5 << 2), 5 << 3]
    assert k.tolist() == [0, 1, 0]


@pytest.mark.parametrize("name", ["pot4", "post4_lut", "post4_split"])
def test_minus_zero_weight_gives_zero_product(name):
    dp = DPS[name]
    p, k = intref.products(dp, [7, 7], [0, 1 << dp.m_bits])
    assert p.tolist() == [0, 0] and k.tolist() == [0, 0]


def test_out_of_range_weight_code_is_rejected():
    with pytest.raises(ValueError, match="out of range"):
        intref.products(DPS["pot4"], [1], [16])  # beyond the 4 storage bits
    with pytest.raises(ValueError, match="out of range"):
        intref.decode_weights(DPS["pot3_e3"], np.array([0b0101]))  # m = 5 > E_max + 1 = 4


def test_wrap_is_twos_complement_modulo():
    assert intref.wrap([2047, 2048, -2048, -2049, 5000], 12).tolist() == [2047, -2048, -2048, 2047, 904]


def test_requantize_rounds_ties_toward_plus_infinity():
    acc = np.array([1, -1, 3, -3], dtype=np.int64).reshape(1, 4, 1)  # n_acc = 1, N = 4, C = 1
    M = np.full((1, 1), 32768)
    y = intref.requantize(acc, M, np.zeros(1), np.array([16]), -100, 100)  # t / 2^16 = acc / 2
    assert y.flatten().tolist() == [1, 0, 2, -1]


def test_requantize_shift_zero_passes_t_through_and_clamps():
    acc = np.array([5, -9, 300]).reshape(1, 3, 1)
    y = intref.requantize(acc, np.array([[1]]), np.array([2]), np.array([0]), -8, 255)
    assert y.flatten().tolist() == [7, -7, 255]


def test_requantize_adds_both_accumulators_with_their_multipliers():
    acc = np.array([[[10]], [[4]]])  # acc_0 = 10, acc_1 = 4, one output
    y = intref.requantize(acc, np.array([[3, 5]]), np.array([-2]), np.array([1]), -100, 100)
    assert y.tolist() == [[(3 * 10 + 5 * 4 - 2 + 1) >> 1]]


# --- product_table ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DPS))
def test_product_table_matches_the_spec_for_every_pair(name):
    dp = DPS[name]
    t = intref.product_table(dp)
    assert t.dtype == np.int64
    assert t.shape == (dp.n_acc, dp.a_range[1] - dp.a_range[0] + 1, dp.w_range[1] - dp.w_range[0] + 1)
    for a in range(dp.a_range[0], dp.a_range[1] + 1):
        for code in range(dp.w_range[0], dp.w_range[1] + 1):
            got = t[:, a - dp.a_range[0], code - dp.w_range[0]]
            if dp.fmt != "uniform" and code % (1 << dp.m_bits) > dp.e_max + 1:
                assert not got.any()
                continue
            p, k = spec_product(dp, a, code)
            want = [0] * dp.n_acc
            want[k] = p
            assert got.tolist() == want


def test_product_table_largest_entry_is_p_max():
    for dp in DPS.values():
        assert np.abs(intref.product_table(dp)).max() == dp.p_max


# --- layers against the loop --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DPS))
@pytest.mark.parametrize("stride, pad, groups", [(1, 0, 1), (2, 1, 2), (1, 2, 4), (2, 3, 1)])
def test_conv2d_matches_the_per_element_loop(name, stride, pad, groups):
    dp = DPS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{stride}/{pad}/{groups}".encode()))
    x, w = random_codes(dp, rng, (2, 4, 6, 5), (4, 4 // groups, 3, 3))
    bits = dp.natural_acc_bits(w[0].size)
    got = intref.accumulate_conv2d(dp, x, w, stride=stride, padding=pad, groups=groups, acc_bits=bits)
    assert np.array_equal(got.numpy(), loop_conv(dp, x, w, stride, pad, groups, bits))


@pytest.mark.parametrize("name", sorted(DPS))
def test_linear_matches_the_per_element_loop(name):
    dp = DPS[name]
    rng = np.random.default_rng(7)
    x, w = random_codes(dp, rng, (3, 11), (5, 11))
    bits = dp.natural_acc_bits(11)
    got = intref.accumulate_linear(dp, x, w, bits).numpy()
    want = loop_conv(dp, x[:, :, None, None], w[:, :, None, None], 1, 0, 1, bits)[..., 0, 0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", ["uniform4", "post4_lut", "post4_split"])
def test_narrow_accumulator_wraps_like_the_loop(name):
    dp = DPS[name]
    rng = np.random.default_rng(11)
    x, w = random_codes(dp, rng, (2, 8, 5, 5), (3, 8, 3, 3))
    got = intref.accumulate_conv2d(dp, x, w, stride=1, padding=1, groups=1, acc_bits=6).numpy()
    full = intref.accumulate_conv2d(dp, x, w, stride=1, padding=1, groups=1, acc_bits=40).numpy()
    assert np.array_equal(got, loop_conv(dp, x, w, 1, 1, 1, 6))
    assert (got != full).any()
    assert got.min() >= -32 and got.max() <= 31


def test_depthwise_conv_matches_the_loop():
    dp = DPS["post4_split"]
    x, w = random_codes(dp, np.random.default_rng(3), (1, 6, 5, 5), (6, 1, 3, 3))
    got = intref.accumulate_conv2d(dp, x, w, stride=2, padding=1, groups=6, acc_bits=20).numpy()
    assert np.array_equal(got, loop_conv(dp, x, w, 2, 1, 6, 20))


def test_reference_returns_acc_and_requantised_y_of_a_hand_case():
    from conftest import tiny_arrays, tiny_manifest

    arrays = tiny_arrays()
    acc, y = intref.reference(tiny_manifest(), arrays)
    assert acc.dtype == np.int64 and y.dtype == np.int16
    assert np.array_equal(acc, arrays["acc"]) and np.array_equal(y, arrays["y"])


def test_a_big_layer_equals_the_product_table_at_sampled_outputs():
    """A 64x64x3x3 layer on 16x16 maps (the GEMM path at size): 40 outputs summed from the table."""
    dp = Datapath("post", 4, 4, arch="lut")
    x, w = (np.asarray(v) for v in random_codes(dp, np.random.default_rng(5), (2, 64, 16, 16), (64, 64, 3, 3)))
    acc = np.asarray(intref.accumulate_conv2d(dp, x, w, stride=1, padding=1, groups=1, acc_bits=24))
    table = intref.product_table(dp)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # code 0 outside the input
    rng = np.random.default_rng(6)
    for n, co, oy, ox in zip(*(rng.integers(0, m, 40) for m in (2, 64, 16, 16))):
        patch = xp[n, :, oy:oy + 3, ox:ox + 3] - dp.a_range[0]
        for k in range(dp.n_acc):
            want = int(table[k][patch, w[co] - dp.w_range[0]].sum())
            assert acc[k, n, co, oy, ox] == int(intref.wrap(want, 24))
