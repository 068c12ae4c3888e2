"""The numba model equals the PyTorch integer reference on random layers, on every path.

The two are written independently from docs/datapath.md; this is where they meet
outside the committed corpus: random shapes, bit widths, codes, requantisation
parameters and accumulator widths (including ones that wrap). Each random layer is
run through every path of the model (``sim.layers``, limits in ``sim.plan``): the exact kernel, the float
GEMM (float32 and float64 plans, whole and chunked fan-in), the packed ``split`` GEMM
and the integer GEMM. Lowering an exactness limit only makes a plan more cautious,
so the property test lowers them to force chunked plans on small layers; fixed layers
below then cross the real limits (``2^24`` for float32, ``2^31`` for int32 sums).
"""

from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asqhw import sim
import asqhw.sim.plan as plan_mod
from asqhw.core.errors import UserError
from asqhw.core.params import ARCHS, Datapath
from asqhw.core.vectors import case_shapes
from asqhw.golden.intref import reference

# variant -> constants of sim.plan patched while the layer runs (see the module docstring)
VARIANTS = {
    "as-shipped": {},
    "float32-chunked": {"F32_EXACT": 1 << 11, "MIN_CHUNK": 1},
    "float64": {"F32_EXACT": 0},
    "float64-chunked": {"F32_EXACT": 0, "F64_EXACT": 1 << 12},
    "packed-split": {"PACK_SAVED_S_PER_MAC": 1.0, "MIN_PACKED_CHUNK": 1, "PACK_MAX_TERM": 1 << 12},
    "packed-split-chunked": {"PACK_SAVED_S_PER_MAC": 1.0, "MIN_PACKED_CHUNK": 1, "F32_EXACT": 1 << 16},
    "int32-tight": {"I32_LIMIT": 1 << 12},
}


def manifest_for(dp, layer, n, acc_bits, natural, out_bits, out_signed):
    lo, hi = (-(2 ** (out_bits - 1)), 2 ** (out_bits - 1) - 1) if out_signed else (0, 2**out_bits - 1)
    return {
        "name": "random", "layer": layer, "batch": n,
        "activation": {"bits": dp.a_bits, "signed": dp.a_signed},
        "weights": {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
                    "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
        "accumulator": {"bits": acc_bits, "natural_bits": natural, "count": dp.n_acc},
        "output": {"bits": out_bits, "signed": out_signed, "lo": lo, "hi": hi},
    }


def arrays_for(manifest, dp, rng, extreme=False, a_low=False):
    shapes = case_shapes(manifest)
    a_lo, a_hi = dp.a_range
    x = rng.integers(a_lo, a_hi + 1, size=shapes["x"]).astype(np.int16)
    if extreme:
        x[...] = a_lo if a_low else a_hi
    if dp.fmt == "uniform":
        w = rng.integers(*dp.w_range, endpoint=True, size=shapes["w"])
    else:
        m = rng.integers(0, dp.e_max + 2, size=shapes["w"])
        w = (rng.integers(0, 2, size=shapes["w"]) << dp.m_bits) | m
    return {"x": x, "w": w.astype(np.int16),
            "M": rng.integers(0, 2**16, size=shapes["M"]).astype(np.int64),
            "B": rng.integers(-(2**47), 2**47, size=shapes["B"]).astype(np.int64),
            "sh": rng.integers(0, 63, size=shapes["sh"]).astype(np.int64)}


@st.composite
def layers(draw, split_only=False):
    fmt = "post" if split_only else draw(st.sampled_from(["uniform", "pot", "post"]))
    arch = "split" if split_only else draw(st.sampled_from(ARCHS[fmt]))
    w_bits = draw(st.integers(2, 8 if fmt == "uniform" else 5))
    a_signed = draw(st.booleans())
    e_max = None
    if fmt != "uniform":
        e_max = draw(st.sampled_from([2 ** (w_bits - 1) - 2, 2 ** (w_bits - 1) - 1]))
    frac = None
    if arch == "lut":
        frac = draw(st.integers(-(-e_max // 2), -(-e_max // 2) + 4))
    dp = Datapath(fmt=fmt, a_bits=draw(st.integers(2, 8)), w_bits=w_bits, arch=arch,
                  a_signed=a_signed, e_max=e_max, frac_bits=frac)
    n = draw(st.integers(1, 3))
    if draw(st.booleans()):
        k, c = draw(st.integers(1, 300)), draw(st.integers(1, 12))
        layer = {"kind": "linear", "in_features": k, "out_features": c}
        fan_in = k
    else:
        g = draw(st.sampled_from([1, 2, 3]))
        ci, co = g * draw(st.integers(1, 6)), g * draw(st.integers(1, 10))
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        pad = draw(st.integers(0, 2))
        h, w = draw(st.integers(max(1, kh - 2 * pad), 7)), draw(st.integers(max(1, kw - 2 * pad), 7))
        layer = {"kind": "conv2d", "in_channels": ci, "out_channels": co, "kernel": [kh, kw],
                 "in_size": [h, w], "stride": draw(st.integers(1, 3)), "padding": pad, "groups": g}
        fan_in = ci // g * kh * kw
    natural = dp.natural_acc_bits(fan_in)
    if natural > 40:
        acc_bits = draw(st.integers(2, 40))
    else:
        acc_bits = draw(st.one_of(st.just(natural), st.integers(2, natural)))
    out_signed = draw(st.booleans())
    out_bits = draw(st.integers(2, 16 if out_signed else 15))
    manifest = manifest_for(dp, layer, n, acc_bits, natural, out_bits, out_signed)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = arrays_for(manifest, dp, rng, extreme=draw(st.booleans()), a_low=draw(st.booleans()))
    return manifest, arrays


def run_all_paths(manifest, arrays, variant):
    """``{method: (acc, y)}`` for every method whose exactness proof goes through."""
    results = {}
    with ExitStack() as stack:
        for name, value in VARIANTS[variant].items():
            stack.enter_context(mock.patch.object(plan_mod, name, value))
        for method in ("exact", "gemm", "int", "auto"):
            try:
                results[method] = sim.run(manifest, arrays, method=method)
            except UserError as e:
                assert method in ("gemm", "int") and "provabl" in str(e), e
    return results


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_every_path_of_the_numba_model_equals_the_pytorch_integer_reference(layer):
    manifest, arrays = layer
    ref_acc, ref_y = reference(manifest, arrays)
    for variant in VARIANTS:
        if variant.startswith("packed") and manifest["weights"]["arch"] != "split":
            continue
        results = run_all_paths(manifest, arrays, variant)
        assert "exact" in results
        for method, (acc, y) in results.items():
            np.testing.assert_array_equal(acc, ref_acc, err_msg=f"{method} ({variant}) acc")
            np.testing.assert_array_equal(y, ref_y, err_msg=f"{method} ({variant}) y")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(split_only=True))
def test_packed_split_paths_equal_the_pytorch_integer_reference(layer):
    manifest, arrays = layer
    ref_acc, ref_y = reference(manifest, arrays)
    for variant in ("packed-split", "packed-split-chunked"):
        for method, (acc, y) in run_all_paths(manifest, arrays, variant).items():
            np.testing.assert_array_equal(acc, ref_acc, err_msg=f"{method} ({variant}) acc")
            np.testing.assert_array_equal(y, ref_y, err_msg=f"{method} ({variant}) y")


# ---- fixed layers at the real limits --------------------------------------------------------

def _fixed(dp, k, c, *, n=2, acc_bits=None, extreme=True, seed=0):
    natural = dp.natural_acc_bits(k)
    bits = acc_bits if acc_bits is not None else natural
    manifest = manifest_for(dp, {"kind": "linear", "in_features": k, "out_features": c}, n, bits,
                            natural, 8, False)
    return manifest, arrays_for(manifest, dp, np.random.default_rng(seed), extreme=extreme)


def _layer_plan(manifest, arrays, cols=None):
    dp = Datapath(manifest["weights"]["format"], manifest["activation"]["bits"],
                  manifest["weights"]["bits"], manifest["weights"]["arch"],
                  a_signed=manifest["activation"]["signed"], e_max=manifest["weights"]["e_max"])
    w = arrays["w"][:, :, None, None]
    layer = sim.Conv2d(w, dp, acc_bits=manifest["accumulator"]["bits"])
    x = arrays["x"]
    return layer, layer.plan(int(x.min()), int(x.max()), cols)


def _assert_equal_to_reference(manifest, arrays, method):
    ref_acc, ref_y = reference(manifest, arrays)
    acc, y = sim.run(manifest, arrays, method=method)
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(y, ref_y)


def test_float32_plan_crossing_2pow24_is_chunked_and_exact():
    dp = Datapath("uniform", 8, 8)                         # |a*w| <= 255 * 128: 514 terms per 2^24
    manifest, arrays = _fixed(dp, 1200, 8)
    _, plan = _layer_plan(manifest, arrays)
    assert plan.dtype is np.float32 and len(plan.chunks[0]) > 1
    _assert_equal_to_reference(manifest, arrays, "gemm")


def test_float64_plan_crossing_2pow53_is_chunked_and_exact():
    dp = Datapath("pot", 8, 8, e_max=126)                  # products reduced to 40 bits: up to 2^47
    manifest, arrays = _fixed(dp, 300, 8, acc_bits=40)
    arrays["w"][:, ::2] = 126 - 39 + 1                     # m = W + 1 for a shift of 39: 255 << 39
    _, plan = _layer_plan(manifest, arrays)
    assert plan.dtype is np.float64 and len(plan.chunks[0]) > 1
    _assert_equal_to_reference(manifest, arrays, "gemm")


def test_packed_split_plan_is_exact():
    dp = Datapath("post", 4, 4, "split")
    manifest, arrays = _fixed(dp, 600, 16, extreme=False)
    _, plan = _layer_plan(manifest, arrays)
    assert plan.pack_bits > 0
    with mock.patch.object(plan_mod, "PACK_SAVED_S_PER_MAC", 1.0):   # take the packed plan
        _assert_equal_to_reference(manifest, arrays, "gemm")


@pytest.mark.parametrize("k,int_ok", [(65793, True), (65794, False)])
def test_int32_path_is_taken_exactly_up_to_2pow31(k, int_ok):
    dp = Datapath("uniform", 8, 8)                         # sum |a*w| = 32640 * K: 2^31 at K = 65794
    manifest, arrays = _fixed(dp, k, 4, n=1)
    arrays["w"][...] = -128
    layer, _ = _layer_plan(manifest, arrays)
    assert layer.int_exact(255, 255) is int_ok
    if int_ok:
        _assert_equal_to_reference(manifest, arrays, "int")
    else:
        with pytest.raises(UserError, match="not provably exact"):
            sim.run(manifest, arrays, method="int")
        _assert_equal_to_reference(manifest, arrays, "auto")


def test_a_mutated_expectation_fails_the_comparison():
    dp = Datapath("uniform", 8, 8)
    manifest, arrays = _fixed(dp, 1200, 8)
    ref_acc, _ = reference(manifest, arrays)
    acc, _ = sim.run(manifest, arrays, method="gemm")
    ref_acc[0, 1, 3] += 1
    assert not np.array_equal(acc, ref_acc)
