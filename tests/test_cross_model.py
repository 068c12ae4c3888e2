"""The numba model equals the PyTorch integer reference on random layers (hypothesis).

The two are written independently from docs/datapath.md; this is where they meet
outside the committed corpus: random shapes, bit widths, codes, requantisation
parameters and accumulator widths (including ones that wrap).
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from asqhw.params import ARCHS, Datapath
from asqhw.vectors import case_shapes
from golden.intref import reference


@st.composite
def layers(draw):
    fmt = draw(st.sampled_from(["uniform", "pot", "post"]))
    arch = draw(st.sampled_from(ARCHS[fmt]))
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
        k, c = draw(st.integers(1, 40)), draw(st.integers(1, 6))
        layer = {"kind": "linear", "in_features": k, "out_features": c}
        fan_in = k
    else:
        g = draw(st.sampled_from([1, 2, 3]))
        ci, co = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
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
    lo, hi = (-(2 ** (out_bits - 1)), 2 ** (out_bits - 1) - 1) if out_signed else (0, 2**out_bits - 1)
    manifest = {
        "name": "random", "layer": layer, "batch": n,
        "activation": {"bits": dp.a_bits, "signed": a_signed},
        "weights": {"format": fmt, "bits": w_bits, "e_max": dp.e_max, "arch": arch,
                    "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
        "accumulator": {"bits": acc_bits, "natural_bits": natural, "count": dp.n_acc},
        "output": {"bits": out_bits, "signed": out_signed, "lo": lo, "hi": hi},
    }
    shapes = case_shapes(manifest)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a_lo, a_hi = dp.a_range
    x = rng.integers(a_lo, a_hi + 1, size=shapes["x"]).astype(np.int16)
    if draw(st.booleans()):       # drive toward the extremes now and then
        x[...] = a_lo if a_signed and draw(st.booleans()) else a_hi
    if fmt == "uniform":
        w = rng.integers(*dp.w_range, endpoint=True, size=shapes["w"])
    else:
        m = rng.integers(0, dp.e_max + 2, size=shapes["w"])
        w = (rng.integers(0, 2, size=shapes["w"]) << dp.m_bits) | m
    arrays = {"x": x, "w": w.astype(np.int16),
              "M": rng.integers(0, 2**16, size=shapes["M"]).astype(np.int64),
              "B": rng.integers(-(2**47), 2**47, size=shapes["B"]).astype(np.int64),
              "sh": rng.integers(0, 63, size=shapes["sh"]).astype(np.int64)}
    return manifest, arrays


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_numba_model_equals_pytorch_integer_reference(layer):
    manifest, arrays = layer
    ref_acc, ref_y = reference(manifest, arrays)
    acc, y = sim.run(manifest, arrays)
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(y, ref_y)
