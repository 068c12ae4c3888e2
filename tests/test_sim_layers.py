"""sim.conv2d / sim.linear: layer geometry, accumulator wrap, and the GEMM path equal to the exact kernel."""

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asqhw import sim
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.sim import direct_path, layers, simd as SIMD, terms, workshare
from asqhw.sim.direct_path import DirectPath
from asqhw.sim.int_path import IntPath

SPLIT4 = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
UNIFORM4 = Datapath(fmt="uniform", a_bits=4, w_bits=4)
UNIFORM8 = Datapath(fmt="uniform", a_bits=8, w_bits=8)
POT4 = Datapath(fmt="pot", a_bits=4, w_bits=4)


def wrap(v, n):
    """Two's complement wrap of Python ints (docs/datapath.md section 5)."""
    return ((v + 2 ** (n - 1)) % 2**n) - 2 ** (n - 1)


def reference_conv(x, w, dp, stride, pad, groups):
    """Unwrapped accumulators as Python ints, by shift-and-add over kernel taps (section 8).

    Products come from sim.product (exact Python ints, verified exhaustively in test_sim_codes).
    """
    a_lo, a_hi = dp.a_range
    a0 = a_lo
    products = {}

    def column(code):
        if code not in products:
            col = np.zeros((dp.n_acc, a_hi - a_lo + 1), dtype=object)
            for a in range(a_lo, a_hi + 1):
                p, kk = sim.product(dp, a, code)
                col[kk, a - a_lo] = p
            products[code] = col
        return products[code]

    nb, c_in, h, wd = x.shape
    c_out, cg_in, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    xp = np.zeros((nb, c_in, h + 2 * pad, wd + 2 * pad), dtype=np.int64)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    out = np.zeros((dp.n_acc, nb, c_out, ho, wo), dtype=object)
    cg_out = c_out // groups
    for c in range(c_out):
        g = c // cg_out
        for j in range(cg_in):
            for ky in range(kh):
                for kx in range(kw):
                    patch = xp[:, g * cg_in + j, ky:ky + stride * (ho - 1) + 1:stride,
                               kx:kx + stride * (wo - 1) + 1:stride]
                    col = column(int(w[c, j, ky, kx]))
                    for k in range(dp.n_acc):
                        out[k, :, c] += col[k][patch - a0]
    return out


def random_codes(rng, dp, x_shape, w_shape, extreme=False):
    lo, hi = dp.a_range
    if extreme:   # largest magnitudes: every activation at the end of its range with the larger |A|
        x = np.full(x_shape, lo if dp.a_signed else hi, dtype=np.int16)
    else:
        x = rng.integers(lo, hi + 1, size=x_shape).astype(np.int16)
    w_lo, w_hi = dp.w_range
    if dp.fmt == "uniform":
        w = (np.full(w_shape, w_lo) if extreme else rng.integers(w_lo, w_hi + 1, size=w_shape)).astype(np.int16)
        return x, w
    mag = np.ones(w_shape, np.int64) if extreme else rng.integers(0, dp.e_max + 2, size=w_shape)
    if extreme and dp.arch == "split" and dp.e_max >= 1:
        mag = rng.integers(1, 3, size=w_shape)      # W = 0 and W = 1: the largest of each accumulator
    sgn = np.zeros(w_shape, np.int64) if extreme else rng.integers(0, 2, size=w_shape)
    return x, ((sgn << dp.m_bits) | mag).astype(np.int16)


# ---- hand examples -------------------------------------------------------------------------

def test_3x3_padded_conv_hand_example():
    x = np.arange(1, 10, dtype=np.int16).reshape(1, 1, 3, 3)           # 1..9
    w = np.array([[[[0, 1, 0], [1, -2, 1], [0, 1, 0]]]], dtype=np.int16)  # Laplacian
    acc = sim.conv2d(x, w, UNIFORM4, padding=1)
    expected = [[2 + 4 - 2, 1 + 3 + 5 - 4, 2 + 6 - 6],
                [1 + 5 + 7 - 8, 2 + 4 + 6 + 8 - 10, 3 + 5 + 9 - 12],
                [4 + 8 - 14, 5 + 7 + 9 - 16, 6 + 8 - 18]]
    assert acc.tolist() == [[[expected]]]


def test_strided_conv_reads_every_second_window():
    x = np.arange(25, dtype=np.int16).reshape(1, 1, 5, 5) % 16
    w = np.ones((1, 1, 2, 2), dtype=np.int16)
    acc = sim.conv2d(x, w, UNIFORM4, stride=2)
    assert acc.shape == (1, 1, 1, 2, 2)
    assert acc[0, 0, 0].tolist() == [[0 + 1 + 5 + 6, 2 + 3 + 7 + 8], [10 + 11 + 15 + 0, 12 + 13 + 1 + 2]]


def test_split_conv_sends_odd_exponents_to_second_accumulator():
    x = np.full((1, 1, 1, 1), 3, dtype=np.int16)
    # code m=2 -> W=1 (odd): 3 << (S - 0) on acc1; m=1 -> W=0: 3 << S on acc0. S = 3.
    acc = sim.conv2d(x, np.array([[[[2]]], [[[1]]]], dtype=np.int16), SPLIT4)
    assert acc[:, 0, :, 0, 0].tolist() == [[0, 24], [24, 0]]


def test_depthwise_conv_keeps_channels_apart():
    x = np.stack([np.full((2, 2), 1), np.full((2, 2), 2)])[None].astype(np.int16)
    w = np.array([[[[1]]], [[[-3]]]], dtype=np.int16)
    acc = sim.conv2d(x, w, UNIFORM4, groups=2)
    assert acc[0, 0, :, 0, 0].tolist() == [1, -6]


def test_linear_is_a_dot_product_per_output():
    x = np.array([[1, 2, 3], [15, 0, 7]], dtype=np.int16)
    w = np.array([[1, -2, 3], [-8, 7, 0]], dtype=np.int16)
    assert sim.linear(x, w, UNIFORM4).tolist() == [[[6, 6], [36, -120]]]


# ---- wrapping ------------------------------------------------------------------------------

def test_narrow_accumulator_wraps_modulo_2_to_the_n():
    x = np.full((1, 64), 15, dtype=np.int16)
    w = np.full((1, 64), 7, dtype=np.int16)                           # sum = 6720
    for n in (2, 5, 8, 12, 13, 14):
        assert sim.linear(x, w, UNIFORM4, acc_bits=n)[0, 0, 0] == wrap(6720, n)


def test_default_width_is_natural_and_never_wraps():
    x = np.full((1, 64), 15, dtype=np.int16)
    w = np.full((1, 64), -8, dtype=np.int16)                          # the worst case, -K * P_max
    assert sim.linear(x, w, UNIFORM4)[0, 0, 0] == -64 * 15 * 8


def test_huge_shifts_wrap_exactly():
    dp = Datapath(fmt="pot", a_bits=8, w_bits=8, e_max=127)            # products up to 255 << 127
    rng = np.random.default_rng(1)
    x, w = random_codes(rng, dp, (2, 40), (3, 40))
    want = np.array(reference_conv(x[:, :, None, None], w[:, :, None, None], dp, 1, 0, 1))[:, :, :, 0, 0]
    for method in ("exact", "gemm"):
        got = sim.linear(x, w, dp, acc_bits=40, method=method)
        assert got.tolist() == [[[wrap(int(v), 40) for v in row] for row in a] for a in want]


# ---- geometry against the reference --------------------------------------------------------

@pytest.mark.parametrize("stride,pad,groups,k", [(1, 0, 1, 1), (1, 1, 1, 3), (2, 1, 1, 3), (2, 3, 1, 7),
                                                  (1, 1, 2, 3), (2, 0, 4, 2), (1, 2, 4, 5)])
@pytest.mark.parametrize("method", ["exact", "gemm", "int"])
def test_conv_matches_reference(stride, pad, groups, k, method):
    rng = np.random.default_rng(stride * 100 + pad * 10 + groups + k)
    dp = Datapath(fmt="post", a_bits=3, w_bits=3, arch="lut", a_signed=True)
    x, w = random_codes(rng, dp, (2, 4, 9, 8), (8, 4 // groups, k, k))
    got = sim.conv2d(x, w, dp, stride=stride, padding=pad, groups=groups, method=method)
    assert got.tolist() == reference_conv(x, w, dp, stride, pad, groups).tolist()


# ---- the GEMM path -------------------------------------------------------------------------

def any_datapath():
    def build(fmt, arch, b_a, b_w, signed, eq17, f_extra):
        if fmt == "uniform":
            return Datapath(fmt=fmt, a_bits=b_a, w_bits=b_w, a_signed=signed)
        e_max = 2 ** (b_w - 1) - (1 if eq17 else 2)
        if arch == "lut":
            return Datapath(fmt=fmt, a_bits=b_a, w_bits=b_w, arch=arch, a_signed=signed, e_max=e_max,
                            frac_bits=min(16, -(-e_max // 2) + f_extra))
        return Datapath(fmt=fmt, a_bits=b_a, w_bits=b_w, arch=arch, a_signed=signed, e_max=e_max)
    fa = st.sampled_from([("uniform", "mul"), ("pot", "shift"), ("post", "lut"), ("post", "split")])
    return st.builds(lambda fa_, *r: build(*fa_, *r), fa, st.integers(2, 8), st.integers(2, 6), st.booleans(),
                     st.booleans(), st.integers(0, 3))


@st.composite
def random_convs(draw, cg=6, c_out_g=5, groups=3, k=4, stride=3, size=7):
    """``(dp, x, w, kw)``: a drawn datapath, codes and conv2d keywords; sometimes a wrapping accumulator.

    The keyword arguments are the largest input channels and output channels per group,
    groups, kernel size, stride and input size drawn.
    """
    dp = draw(any_datapath())
    n, cg, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, cg)), draw(st.integers(1, c_out_g))
    groups, k, stride = draw(st.integers(1, groups)), draw(st.integers(1, k)), draw(st.integers(1, stride))
    pad = draw(st.integers(0, 2))
    size = max(draw(st.integers(1, size)), k - 2 * pad)
    narrow, extreme = draw(st.integers(0, 12)), draw(st.booleans())
    fan_in = cg * k * k
    natural = dp.natural_acc_bits(fan_in)
    bits = None if narrow == 0 and natural <= 40 else max(2, min(40, natural - narrow))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x, w = random_codes(rng, dp, (n, cg * groups, size, size), (c_out_g * groups, cg, k, k), extreme)
    return dp, x, w, dict(stride=stride, padding=pad, groups=groups, acc_bits=bits)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_convs())
def test_gemm_path_equals_exact_kernel(conv):
    dp, x, w, kw = conv
    assert np.array_equal(sim.conv2d(x, w, dp, method="gemm", **kw), sim.conv2d(x, w, dp, method="exact", **kw))


@pytest.mark.parametrize(("dp", "dtype"), [(UNIFORM8, np.float32),
                                           (Datapath(fmt="post", a_bits=8, w_bits=4, arch="lut", frac_bits=16),
                                            np.float64)])
def test_gemm_chunks_worst_case_fan_in_exactly(monkeypatch, dp, dtype):
    monkeypatch.setattr(layers, "CENTRE_MODE", "never")     # constant codes would centre to all-zero GEMMs
    rng = np.random.default_rng(7)
    x, w = random_codes(rng, dp, (1, 512, 3, 3), (4, 512, 3, 3), extreme=True)
    plan = sim.Conv2d(w, dp, padding=1).plan(int(x.min()), int(x.max()))
    assert plan.dtype is dtype and (dtype is np.float64 or len(plan.chunks[0]) > 1)
    got = sim.conv2d(x, w, dp, padding=1, method="gemm")
    assert np.array_equal(got, sim.conv2d(x, w, dp, padding=1, method="exact"))
    assert got[0, 0, 0, 1, 1] == 512 * 9 * dp.p_max * (-1 if dp.fmt == "uniform" else 1)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), k=st.integers(1, 60), limit=st.integers(1, 1000), seed=st.integers(0, 2**31))
def test_chunks_keep_every_row_within_the_limit(rows, k, limit, seed):
    from asqhw.sim.kernels import chunk_ends
    bound = np.random.default_rng(seed).integers(0, limit + 1, size=(k, rows))
    ends = chunk_ends(bound, limit)
    assert ends[-1] == k and np.all(np.diff(np.concatenate([[0], ends])) > 0)
    starts = np.concatenate([[0], ends[:-1]])
    assert all((bound[s:e].sum(axis=0) <= limit).all() for s, e in zip(starts, ends))


def test_split_4bit_worst_case_resnet_fan_in_stays_float32_and_exact():
    w = np.full((8, 512, 3, 3), 1, dtype=np.int16)                     # W = 0, the largest product
    x = np.full((1, 512, 3, 3), 15, np.int16)
    layer = sim.Conv2d(w, SPLIT4, padding=1, method="gemm")
    assert layer.plan(0, 15).dtype is np.float32
    assert layer(x)[0, 0, 0, 1, 1] == 512 * 9 * 15 * 8                  # K * P_max
    assert np.array_equal(layer(x), sim.conv2d(x, w, SPLIT4, padding=1, method="exact"))


@pytest.mark.parametrize(("extreme", "packed"), [(False, True), (True, False)])
def test_split_packs_both_accumulators_into_one_gemm_when_chunks_stay_long(extreme, packed):
    rng = np.random.default_rng(11)
    x, w = random_codes(rng, SPLIT4, (2, 256, 5, 5), (16, 256, 3, 3), extreme)
    layer = sim.Conv2d(w, SPLIT4, padding=1, method="gemm")
    plan = layer.plan(int(x.min()), int(x.max()))
    assert (plan.pack_bits > 0) == packed and plan.dtype is np.float32
    assert np.array_equal(layer(x), sim.conv2d(x, w, SPLIT4, padding=1, method="exact"))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 5), k=st.integers(1, 80), bits=st.integers(2, 12), seed=st.integers(0, 2**31))
def test_packed_chunks_keep_both_sums_within_limits(rows, k, bits, seed):
    from asqhw.sim.kernels import chunk_ends_packed
    rng = np.random.default_rng(seed)
    lim0, limit = (1 << (bits - 1)) - 1, 1 << 16
    b0 = rng.integers(0, lim0 + 1, size=(k, rows))
    b1 = rng.integers(0, max(1, (limit - lim0) >> bits), size=(k, rows))
    ends = chunk_ends_packed(b0, b1, lim0, 1 << bits, limit)
    starts = np.concatenate([[0], ends[:-1]])
    assert ends[-1] == k
    for s, e in zip(starts, ends):
        s0, s1 = b0[s:e].sum(axis=0), b1[s:e].sum(axis=0)
        assert (s0 <= lim0).all() and (s0 + (s1 << bits) <= limit).all()


# ---- validation ----------------------------------------------------------------------------

def test_activation_code_outside_range_is_rejected():
    with pytest.raises(UserError, match=r"outside \[0, 15\]"):
        sim.linear(np.array([[16]]), np.array([[1]]), UNIFORM4)


def test_invalid_weight_code_is_rejected():
    dp = Datapath(fmt="pot", a_bits=3, w_bits=3, e_max=1)
    with pytest.raises(UserError, match="weight code"):
        sim.linear(np.array([[1]]), np.array([[0b011]]), dp)


def test_too_wide_natural_accumulator_needs_explicit_width():
    dp = Datapath(fmt="pot", a_bits=8, w_bits=8, e_max=127)
    with pytest.raises(UserError, match="give acc_bits"):
        sim.linear(np.array([[1]]), np.array([[1]]), dp)


def test_groups_must_divide_channels():
    with pytest.raises(UserError, match="groups=2"):
        sim.conv2d(np.zeros((1, 3, 4, 4), np.int16), np.zeros((2, 1, 1, 1), np.int16), UNIFORM4, groups=2)


def test_small_fan_in_uses_one_float32_gemm():
    w = np.ones((8, 1, 3, 3), dtype=np.int16)
    assert sim.Conv2d(w, UNIFORM8, padding=1).plan(0, 255) == sim.GemmPlan(np.float32, 2**24, ((9,),))


def test_layer_object_reuses_prepared_weights_across_inputs():
    rng = np.random.default_rng(3)
    x1, w = random_codes(rng, SPLIT4, (2, 16, 6, 6), (16, 16, 3, 3))
    x2, _ = random_codes(rng, SPLIT4, (1, 16, 5, 5), (16, 16, 3, 3))
    layer = sim.Conv2d(w, SPLIT4, padding=1, method="gemm")
    for x in (x1, x2, x1):
        assert np.array_equal(layer(x), sim.conv2d(x, w, SPLIT4, padding=1, method="exact"))


@pytest.mark.parametrize("bits", [6, 11, 16])
def test_unpacking_recovers_both_sums_at_their_limits(bits):
    from asqhw.sim.kernels import unpack_add
    s0 = np.array([-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1, 0, 5, -7], dtype=np.int64)
    s1 = np.array([(2**24 - 2**bits) >> bits, -((2**24 - 2**bits) >> bits), 1, -1, 0], dtype=np.int64)
    res = (s0 + (s1 << bits)).astype(np.float32)[None, None, :]
    assert np.all(np.abs(s0 + (s1 << bits)) <= 2**24)
    acc0, acc1 = np.empty((1, 5), np.float32), np.empty((1, 5), np.float32)
    unpack_add(res, acc0, acc1, bits, True)
    unpack_add(res, acc0, acc1, bits, False)
    assert acc0[0].tolist() == (2 * s0).tolist() and acc1[0].tolist() == (2 * s1).tolist()


@pytest.mark.parametrize("fmt,arch,a_bits,w_bits", [("post", "split", 4, 4), ("uniform", "mul", 8, 8),
                                                    ("post", "lut", 4, 4), ("pot", "shift", 4, 4)])
def test_work_shared_gemm_path_equals_exact_kernel(monkeypatch, fmt, arch, a_bits, w_bits):
    """Forcing every GEMM call onto the multi-thread (shared) path changes no bit."""
    from asqhw.core.params import Datapath

    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    dp = Datapath(fmt=fmt, a_bits=a_bits, w_bits=w_bits, arch=arch)
    rng = np.random.default_rng(7)
    x = rng.integers(*dp.a_range, endpoint=True, size=(2, 16, 12, 12)).astype(np.int16)
    if fmt == "uniform":
        w = rng.integers(*dp.w_range, endpoint=True, size=(32, 16, 3, 3)).astype(np.int16)
    else:
        w = ((rng.integers(0, 2, size=(32, 16, 3, 3)) << dp.m_bits)
             | rng.integers(0, dp.e_max + 2, size=(32, 16, 3, 3))).astype(np.int16)
    for stride in (1, 2):
        exact = sim.conv2d(x, w, dp, stride=stride, padding=1, method="exact")
        fast = sim.conv2d(x, w, dp, stride=stride, padding=1, method="gemm")
        np.testing.assert_array_equal(fast, exact)


# ---- the integer GEMM path -----------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_convs(c_out_g=9))
def test_int_path_equals_exact_kernel_or_refuses(conv):
    dp, x, w, kw = conv
    layer = sim.Conv2d(w, dp, method="int", **kw)
    if layer.int_exact(int(x.min()), int(x.max())):
        assert np.array_equal(layer(x), sim.conv2d(x, w, dp, method="exact", **kw))
    else:
        with pytest.raises(UserError, match="integer GEMM"):
            layer(x)


@pytest.mark.parametrize("dp", [SPLIT4, UNIFORM8, Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"),
                                Datapath(fmt="pot", a_bits=4, w_bits=4, arch="shift")])
@pytest.mark.parametrize(("c_out", "size"), [(4, 4), (5, 5), (7, 3), (9, 6)])
def test_int_path_handles_channel_and_position_remainders(dp, c_out, size):
    rng = np.random.default_rng(c_out * 10 + size)
    x, w = random_codes(rng, dp, (3, 70, size, size), (c_out, 70, 3, 3))
    for bits in (None, 9):
        got = sim.conv2d(x, w, dp, padding=1, acc_bits=bits, method="int")
        assert np.array_equal(got, sim.conv2d(x, w, dp, padding=1, acc_bits=bits, method="exact"))


@pytest.mark.parametrize("dp", [SPLIT4, UNIFORM8, Datapath(fmt="post", a_bits=8, w_bits=4, arch="lut")])
def test_int_path_is_exact_for_all_extreme_codes(dp):
    rng = np.random.default_rng(3)
    x, w = random_codes(rng, dp, (1, 300, 3, 3), (6, 300, 3, 3), extreme=True)
    got = sim.conv2d(x, w, dp, padding=1, method="int")
    assert np.array_equal(got, sim.conv2d(x, w, dp, padding=1, method="exact"))


SIGNED8 = Datapath(fmt="uniform", a_bits=8, w_bits=8, a_signed=True)


def test_int_path_takes_a_sum_of_magnitudes_just_below_2_to_the_31():
    k = (1 << 31) // (128 * 128) - 1                          # every product is (-128) * (-128) = 2^14
    x = np.full((1, k), -128, dtype=np.int16)
    w = np.full((5, k), -128, dtype=np.int16)
    got = sim.linear(x, w, SIGNED8, method="int")
    assert got[0, 0].tolist() == [2**31 - 2**14] * 5


def test_int_path_refuses_a_sum_of_magnitudes_of_2_to_the_31():
    k = (1 << 31) // (128 * 128)                              # the sum would be 2^31, outside int32
    x = np.full((1, k), -128, dtype=np.int16)
    w = np.full((5, k), -128, dtype=np.int16)
    with pytest.raises(UserError, match="integer GEMM"):
        sim.linear(x, w, SIGNED8, method="int")
    assert sim.linear(x, w, SIGNED8)[0, 0].tolist() == [2**31] * 5      # auto falls back


def test_int_path_refuses_weights_beyond_int16():
    dp = Datapath(fmt="pot", a_bits=4, w_bits=6, e_max=20)              # shifts up to 2^20
    x = np.ones((1, 8), dtype=np.int16)
    w = np.full((4, 8), 1, dtype=np.int16)                              # m = 1: W = 0, shift 2^20
    with pytest.raises(UserError, match="integer GEMM"):
        sim.linear(x, w, dp, method="int")


def test_auto_takes_the_portable_int_kernel_for_a_large_uniform_layer_without_simd(monkeypatch):
    monkeypatch.setattr(layers, "SIMD_MODE", "none")
    calls = []
    monkeypatch.setattr(IntPath, "__call__", lambda self, *a: calls.append(a) or "int")
    rng = np.random.default_rng(5)
    x, w = random_codes(rng, UNIFORM8, (1, 128, 7, 7), (16, 128, 3, 3))
    assert sim.Conv2d(w, UNIFORM8, padding=1)(x) == "int" and len(calls) == 1


def test_auto_takes_the_direct_kernel_when_the_cpu_has_one(monkeypatch):
    assert SIMD.VARIANTS, "this x86 test machine has AVX2 at least"
    calls = []
    monkeypatch.setattr(DirectPath, "__call__", lambda self, *a: calls.append(a[5]) or "direct")   # the variant
    rng = np.random.default_rng(5)
    x, w = random_codes(rng, SPLIT4, (1, 64, 14, 14), (16, 64, 3, 3))
    assert sim.Conv2d(w, SPLIT4, padding=1)(x) == "direct" and calls == [SIMD.VARIANTS[0]]


# ---- centred activations on the float GEMM path --------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_convs())
def test_centred_gemm_path_equals_exact_kernel(conv):
    dp, x, w, kw = conv
    old, layers.CENTRE_MODE = layers.CENTRE_MODE, "always"
    try:
        layer = sim.Conv2d(w, dp, method="gemm", **kw)
        got = layer(x)
        plan = layer.plan(int(x.min()), int(x.max()))
    finally:
        layers.CENTRE_MODE = old
    xmin, xmax = int(x.min()), int(x.max())
    assert plan.centre == (0 if dp.arch == "lut" else (xmin + xmax) // 2)
    assert np.array_equal(got, sim.conv2d(x, w, dp, method="exact", **kw))


@pytest.mark.parametrize(("stride", "pad", "groups", "bits"), [(1, 1, 1, None), (2, 1, 1, None), (1, 2, 2, 9),
                                                               (2, 0, 1, 12)])
def test_centred_packed_split_plan_halves_the_chunks_and_is_exact(stride, pad, groups, bits):
    rng = np.random.default_rng(stride + 10 * pad + 100 * groups)
    x, w = random_codes(rng, SPLIT4, (2, 512, 6, 6), (16, 512 // groups, 3, 3))
    layer = sim.Conv2d(w, SPLIT4, stride=stride, padding=pad, groups=groups, acc_bits=bits, method="gemm")
    plan = layer.plan(int(x.min()), int(x.max()))
    assert plan.centre == 7 and plan.pack_bits > 0
    old, layers.CENTRE_MODE = layers.CENTRE_MODE, "never"
    try:
        plain = layer.plan(int(x.min()), int(x.max()))
        assert plain.centre == 0 and 2 * max(map(len, plan.chunks)) <= max(map(len, plain.chunks)) + 2
        want = layer(x)
    finally:
        layers.CENTRE_MODE = old
    assert np.array_equal(layer(x), want)
    assert np.array_equal(want, sim.conv2d(x, w, SPLIT4, stride=stride, padding=pad, groups=groups, acc_bits=bits,
                                           method="exact"))


def test_centring_correction_counts_only_taps_inside_the_input():
    # one input channel of constant code 15, weights all W = 0 (P = 15 * 8 = 120, first accumulator):
    # a corner output of a padded 3x3 conv sees 4 valid taps, an edge 6, the centre 9
    x = np.full((1, 1, 5, 5), 15, np.int16)
    x[0, 0, 2, 2] = 0                                           # codes span [0, 15]: centre 7
    w = np.full((8, 1, 3, 3), 1, np.int16)
    old, layers.CENTRE_MODE = layers.CENTRE_MODE, "always"
    try:
        layer = sim.Conv2d(w, SPLIT4, padding=1, method="gemm")
        got = layer(x)
        assert layer.plan(0, 15).centre == 7
    finally:
        layers.CENTRE_MODE = old
    assert got[0, 0, 0, 0, 0] == 4 * 120 and got[0, 0, 0, 0, 2] == 6 * 120 and got[0, 0, 0, 4, 4] == 4 * 120
    assert got[0, 0, 0, 2, 2] == 8 * 120 and got[0, 0, 0, 1, 1] == 8 * 120


@pytest.mark.parametrize("method", ["exact", "int"])
def test_thread_ranges_of_the_exact_and_int_paths_change_no_bit(monkeypatch, method):
    """The exact kernel and the portable int path cut into one range per thread give the one-range result."""
    monkeypatch.setattr(layers, "SIMD_MODE", "none")                   # the direct kernels share by numba threads
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
    rng = np.random.default_rng(21)
    x, w = random_codes(rng, dp, (3, 24, 7, 7), (20, 24, 3, 3))
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 1 << 62)
    one = sim.conv2d(x, w, dp, padding=1, acc_bits=11, method=method)
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    calls = []
    real = workshare.in_ranges
    monkeypatch.setattr(workshare, "in_ranges", lambda fn, n, work: calls.append(n) or real(fn, n, work))
    assert np.array_equal(sim.conv2d(x, w, dp, padding=1, acc_bits=11, method=method), one) and calls
    assert np.array_equal(one, sim.conv2d(x, w, dp, padding=1, acc_bits=11, method="gemm"))


# ---- the byte SIMD kernels of the int path (sim.simd) --------------------------------------

def _cpu_flags():
    from pathlib import Path
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_the_simd_variants_follow_the_cpu_flags():
    flags = _cpu_flags()
    assert ("avx2" in SIMD.VARIANTS) == ("avx2" in flags)
    assert ("vnni512" in SIMD.VARIANTS) == ({"avx512_vnni", "avx512bw", "avx512f"} <= flags)
    assert ("vnni256" in SIMD.VARIANTS) == ("avx_vnni" in flags or {"avx512_vnni", "avx512vl"} <= flags)


@pytest.mark.parametrize("variant", SIMD.VARIANTS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(conv=random_convs(cg=40, c_out_g=40, groups=2, k=3, stride=2, size=9),
       split_work=st.sampled_from(["no", "positions", "rows"]))
def test_simd_int_path_equals_exact_kernel(monkeypatch, variant, conv, split_work):
    """Every direct byte kernel this CPU has, forced: equal to the exact kernel whenever its bounds allow it.

    ``split_work`` cuts every call into one share per thread (by positions or by row blocks)
    and one tile per chunk.
    """
    import asqhw.sim.direct as direct
    monkeypatch.setattr(layers, "SIMD_MODE", variant)
    if split_work != "no":
        monkeypatch.setattr(direct_path, "DIRECT_SHARE_MACS", 0)
        monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
        monkeypatch.setattr(direct_path, "DIRECT_ROW_SPLIT", 1 << 30 if split_work == "rows" else 0)
        monkeypatch.setattr(direct, "CHUNK_BYTES", 1)
    dp, x, w, kw = conv
    layer = sim.Conv2d(w, dp, method="int", **kw)
    xmin, xmax = int(x.min()), int(x.max())
    if layer.int_exact(xmin, xmax):
        assert layer.simd_variant(xmin, xmax) in (variant, None)
        assert np.array_equal(layer(x), sim.conv2d(x, w, dp, method="exact", **kw))


@pytest.mark.parametrize("variant", SIMD.VARIANTS)
@pytest.mark.parametrize(("c_in", "k", "stride", "pad"), [(3, 7, 2, 3),      # folded taps (3 channels x 7 taps)
                                                          (64, 3, 1, 1),     # two row blocks of every width
                                                          (40, 1, 2, 0),     # 1x1 stride 2: sampled planes
                                                          (64, 3, 2, 1)])
@pytest.mark.parametrize("dp", [SPLIT4, Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"), POT4])
@pytest.mark.parametrize("by_rows", [False, True])
def test_direct_kernel_runs_and_equals_the_exact_kernel_across_shares_and_chunks(monkeypatch, variant, c_in, k,
                                                                                  stride, pad, dp, by_rows):
    import asqhw.sim.direct as direct
    monkeypatch.setattr(layers, "SIMD_MODE", variant)
    monkeypatch.setattr(direct_path, "DIRECT_SHARE_MACS", 0)
    monkeypatch.setattr(workshare, "MIN_SHARE_MACS", 0)
    monkeypatch.setattr(direct_path, "DIRECT_ROW_SPLIT", 1 << 30 if by_rows else 0)
    monkeypatch.setattr(direct, "CHUNK_BYTES", 4096)
    rng = np.random.default_rng(c_in * k)
    x, w = random_codes(rng, dp, (3, c_in, 13, 11), (72, c_in, k, k))
    layer = sim.Conv2d(w, dp, stride=stride, padding=pad)
    assert layer.simd_variant(0, 15) == variant
    got = layer(x)
    assert np.array_equal(got, sim.conv2d(x, w, dp, stride=stride, padding=pad, method="exact"))
    shares = next(iter(layer.direct_path.kept_shares.values())).shares
    n_ob = layer.direct_path.kept_weights[variant, False].n_ob
    assert len(shares) == min(2, numba.get_num_threads()) and (shares[0].ob1 < n_ob) == (
        by_rows and len(shares) > 1)
    x[1, 0, 4, 4] = 15 - x[1, 0, 4, 4]                                 # a changed input changes the result
    assert not np.array_equal(layer(x), got)


@pytest.mark.parametrize("variant", SIMD.VARIANTS)
def test_simd_kernels_take_uint8_activations_and_int8_weights_at_their_extremes(monkeypatch, variant):
    monkeypatch.setattr(layers, "SIMD_MODE", variant)
    dp = Datapath(fmt="uniform", a_bits=8, w_bits=7)                   # |w| <= 64: 2 * 255 * 64 < 2^15
    x = np.full((1, 300, 4, 4), 255, np.int16)
    w = np.full((6, 300, 3, 3), -64, np.int16)
    w[1] = 63
    layer = sim.Conv2d(w, dp, padding=1, method="int")
    assert layer.simd_variant(0, 255) == variant
    got = layer(x)
    assert got[0, 0, 0, 1, 1] == -255 * 64 * 2700 and got[0, 0, 1, 1, 1] == 255 * 63 * 2700
    assert np.array_equal(got, sim.conv2d(x, w, dp, padding=1, method="exact"))


@pytest.mark.parametrize("variant", [v for v in SIMD.VARIANTS if v == "avx2"])
def test_avx2_kernel_spreads_the_bytes_where_a_byte_pair_could_saturate(monkeypatch, variant):
    monkeypatch.setattr(layers, "SIMD_MODE", variant)
    x = np.full((1, 300, 4, 4), 255, np.int16)
    w = np.full((6, 300, 3, 3), -128, np.int16)                        # 2 * 255 * 128 > 2^15 - 1
    layer = sim.Conv2d(w, UNIFORM8, padding=1, method="int")
    assert layer.simd_variant(0, 255) == "avx2" and layer.direct_path.spread(0, 255, "avx2")
    assert layer(x)[0, 0, 0, 1, 1] == -255 * 128 * 2700
    assert layer.direct_path.kept_weights["avx2", True].n_t == 2                        # every term byte followed by a zero byte
    assert not layer.direct_path.spread(0, 127, "avx2")                            # 2 * 127 * 128 = 32512 fits
    x[:] = 127
    assert layer(x)[0, 0, 0, 1, 1] == -127 * 128 * 2700
    assert layer.direct_path.kept_weights["avx2", False].n_t == 1


@pytest.mark.parametrize("variant", [v for v in SIMD.VARIANTS if v == "avx2"])
def test_avx2_kernel_adds_pair_sums_in_int16_exactly_up_to_its_bound(monkeypatch, variant):
    monkeypatch.setattr(layers, "SIMD_MODE", variant)
    dp = Datapath(fmt="uniform", a_bits=4, w_bits=8)
    x = np.full((1, 300, 4, 4), 15, np.int16)
    w = np.full((6, 300, 3, 3), -128, np.int16)                        # every pair sum -3840
    layer = sim.Conv2d(w, dp, padding=1, method="int")
    assert layer.direct_path.pair_groups(0, 15, False) == 8                       # 8 * 3840 = 30720 <= 2^15 - 1 < 9 * 3840
    want = sim.conv2d(x, w, dp, padding=1, method="exact")
    assert layer(x)[0, 0, 0, 1, 1] == -15 * 128 * 2700 and np.array_equal(layer(x), want)
    monkeypatch.setattr(DirectPath, "pair_groups", lambda self, *a: 9)  # one group more wraps an int16 lane
    assert not np.array_equal(sim.Conv2d(w, dp, padding=1, method="int")(x), want)


@pytest.mark.parametrize("block_bytes", [1, 2 * 10 * 10 * 64])            # one image per block; two, then one
@pytest.mark.parametrize("shares", [False, True])
def test_direct_calls_in_image_blocks_equal_one_block(monkeypatch, block_bytes, shares):
    assert SIMD.VARIANTS, "this x86 test machine has AVX2 at least"
    rng = np.random.default_rng(9)
    x, w = random_codes(rng, SPLIT4, (5, 64, 8, 8), (24, 64, 3, 3))
    want = sim.conv2d(x, w, SPLIT4, padding=1, method="exact")
    monkeypatch.setattr(direct_path, "DIRECT_BLOCK_BYTES", block_bytes)
    if shares:
        monkeypatch.setattr(direct_path, "DIRECT_SHARE_MACS", 0)
    layer = sim.Conv2d(w, SPLIT4, padding=1)
    assert np.array_equal(layer(x), want)
    blocks = sorted(k[2] for k in layer.direct_path.kept_shares)
    assert blocks == ([1] if block_bytes == 1 else [1, 2])


def test_a_direct_layer_keeps_the_buffers_of_its_last_four_call_geometries():
    assert SIMD.VARIANTS, "this x86 test machine has AVX2 at least"
    rng = np.random.default_rng(3)
    x, w = random_codes(rng, SPLIT4, (6, 64, 8, 8), (16, 64, 3, 3))
    layer = sim.Conv2d(w, SPLIT4, padding=1)
    for n in range(1, 7):                                               # six batch sizes
        assert np.array_equal(layer(x[:n]), sim.conv2d(x[:n], w, SPLIT4, padding=1, method="exact"))
    kept = sorted(k[2] for k in layer.direct_path.kept_shares)
    assert kept == [3, 4, 5, 6]


def test_without_simd_the_int_path_runs_the_portable_kernel(monkeypatch):
    monkeypatch.setattr(layers, "SIMD_MODE", "none")
    rng = np.random.default_rng(4)
    x, w = random_codes(rng, SPLIT4, (2, 40, 6, 6), (12, 40, 3, 3))
    layer = sim.Conv2d(w, SPLIT4, padding=1, method="int")
    assert layer.simd_variant(0, 15) is None
    assert np.array_equal(layer(x), sim.conv2d(x, w, SPLIT4, padding=1, method="exact"))


# ---- lut on the byte kernels: terms above 255 split into two bytes --------------------------

@pytest.mark.parametrize("dp", [Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut"),
                                Datapath(fmt="post", a_bits=8, w_bits=4, arch="lut"),
                                Datapath(fmt="post", a_bits=3, w_bits=5, arch="lut")])
@pytest.mark.parametrize("nbits", [5, 12, 40])
def test_byte_terms_give_the_same_products_modulo_the_accumulator(dp, nbits):
    g, v = terms.term_tables(dp, nbits)
    gb, vb = terms.byte_terms(dp, nbits)
    assert gb.min() >= 0 and gb.max() <= 255
    want = np.einsum("ta,tkw->kaw", g.astype(object), v.astype(object))
    got = np.einsum("ta,tkw->kaw", gb.astype(object), vb.astype(object))
    assert ((want - got) % 2**nbits == 0).all()
    assert np.abs(vb).max() < 2 ** (nbits - 1) + 1                       # reduced like v


def test_terms_of_2_to_the_14_or_more_are_not_split_and_smaller_ones_are():
    v = np.array([[[1, -3]], [[2, 5]]], dtype=np.int64)                   # (n_t, n_acc, n_w)
    g = np.array([[0, 1, 2], [0, 300, (1 << 14) - 1]], dtype=np.int64)
    gs, vs = terms.split_bytes(g, v, 20)
    assert gs.tolist() == [[0, 1, 2], [0, 300 % 64, 63], [0, 300 // 64, 255]]
    assert vs[2].tolist() == [[128, 320]]
    g[1, 2] = 1 << 14
    gs, vs = terms.split_bytes(g, v, 20)
    assert (gs == g).all() and (vs == v).all()


def test_linear_part_leaves_small_residues_and_the_same_products():
    dp = Datapath(fmt="post", a_bits=3, w_bits=5, arch="lut", frac_bits=16)      # LUT entries up to 324387
    g, v = terms.term_tables(dp, 20)
    gl, vl = terms.linear_part(g, v, dp.a_range[0], 20)
    assert g.max() > 1 << 18 and 0 <= gl.min() and gl.max() <= 7
    want = np.einsum("ta,tkw->kaw", g.astype(object), v.astype(object))
    got = np.einsum("ta,tkw->kaw", gl.astype(object), vl.astype(object))
    assert ((want - got) % 2**20 == 0).all()
    signed = Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut", a_signed=True)
    gs, vs = terms.term_tables(signed, 20)
    assert all((a == b).all() for a, b in zip(terms.linear_part(gs, vs, signed.a_range[0], 20), (gs, vs)))


def test_lut_4bit_int_path_runs_on_bytes_and_equals_the_exact_kernel():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut")
    rng = np.random.default_rng(8)
    x, w = random_codes(rng, dp, (2, 64, 6, 6), (16, 64, 3, 3))
    for bits in (None, 9):
        layer = sim.Conv2d(w, dp, padding=1, acc_bits=bits, method="int")
        assert layer.int_weights().n_t == 4                              # A, and the residues of LUT1, LUT3, LUT5
        assert layer.simd_variant(0, 15) == (SIMD.VARIANTS and next(v for v in layers_order() if v in SIMD.VARIANTS))
        assert np.array_equal(layer(x), sim.conv2d(x, w, dp, padding=1, acc_bits=bits, method="exact"))
    x[:] = 15                                                             # the largest LUT entries
    assert np.array_equal(sim.conv2d(x, w, dp, padding=1, method="int"), sim.conv2d(x, w, dp, padding=1, method="exact"))


def layers_order():
    return layers.SIMD_ORDER
