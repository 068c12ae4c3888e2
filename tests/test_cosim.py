# amaranth: UnusedElaboratable=no
"""RTL co-simulation (hdl.cosim) against golden-vector cases.

Until the bundled corpus exists these tests build their own small cases with a
direct Python reading of docs/datapath.md (sections 4-6 and 8).
"""

from pathlib import Path

import numpy as np
import pytest

from asqhw.core.params import Datapath, output_range
from asqhw.core.vectors import load_cases, read_case, write_case

from spec_reading import spec_product, spec_wrap
from asqhw.core.conform import compare
from asqhw.hdl.cosim import run_cases_rtl

CORPUS = Path(__file__).resolve().parent.parent / "asqhw" / "golden" / "vectors"


def spec_requant(accs, ms, b, sh, lo, hi):
    t = sum(m * a for m, a in zip(ms, accs)) + b
    r = (t + (1 << (sh - 1))) >> sh if sh else t
    return min(max(r, lo), hi)


def spec_acc(dp, layer, x, w, n_acc, acc_bits):
    """acc[k][output...] of section 8 by direct loops."""
    if layer["kind"] == "linear":
        n, kk = x.shape
        c = w.shape[0]
        acc = np.zeros((n_acc, n, c), dtype=np.int64)
        for i in range(n):
            for o in range(c):
                s = [0] * n_acc
                for j in range(kk):
                    p, k = spec_product(dp, int(x[i, j]), int(w[o, j]))
                    s[k] += p
                acc[:, i, o] = [spec_wrap(v, acc_bits) for v in s]
        return acc
    n, ci, h, wd = x.shape
    co, cg, kh, kw = w.shape
    g, st, pad = layer["groups"], layer["stride"], layer["padding"]
    ho, wo = (h + 2 * pad - kh) // st + 1, (wd + 2 * pad - kw) // st + 1
    acc = np.zeros((n_acc, n, co, ho, wo), dtype=np.int64)
    for i in range(n):
        for o in range(co):
            grp = o // (co // g)
            for oy in range(ho):
                for ox in range(wo):
                    s = [0] * n_acc
                    for j in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                yy, xx = oy * st - pad + ky, ox * st - pad + kx
                                a = int(x[i, grp * cg + j, yy, xx]) if 0 <= yy < h and 0 <= xx < wd else 0
                                p, k = spec_product(dp, a, int(w[o, j, ky, kx]))
                                s[k] += p
                    acc[:, i, o, oy, ox] = [spec_wrap(v, acc_bits) for v in s]
    return acc


def make_case(directory, name, dp, layer, *, batch=1, acc_bits=None, out_bits=4, out_signed=False,
              seed=0):
    """Write a random case whose acc and y come from the direct reading above."""
    rng = np.random.default_rng(seed)
    if layer["kind"] == "linear":
        k, c = layer["in_features"], layer["out_features"]
        xs, ws = (batch, k), (c, k)
        fan_in = k
    else:
        ci, c, g = layer["in_channels"], layer["out_channels"], layer["groups"]
        xs, ws = (batch, ci) + tuple(layer["in_size"]), (c, ci // g) + tuple(layer["kernel"])
        fan_in = ci // g * layer["kernel"][0] * layer["kernel"][1]
    lo_a, hi_a = dp.a_range
    x = rng.integers(lo_a, hi_a + 1, size=xs)
    if dp.fmt == "uniform":
        lo_w, hi_w = dp.w_range
        w = rng.integers(lo_w, hi_w + 1, size=ws)
    else:
        m = rng.integers(0, dp.e_max + 2, size=ws)
        w = (rng.integers(0, 2, size=ws) << dp.m_bits) | m
    natural = dp.natural_acc_bits(fan_in)
    acc_bits = natural if acc_bits is None else acc_bits
    acc = spec_acc(dp, layer, x, w, dp.n_acc, acc_bits)
    biggest = int(np.abs(acc).max()) + 1
    sh = np.array([max(0, (biggest * 40000).bit_length() - out_bits - 1 + int(rng.integers(-1, 2)))
                   for _ in range(c)], dtype=np.int64)
    M = rng.integers(0, 65536, size=(c, dp.n_acc))
    B = np.array([int(rng.integers(-(1 << 20), 1 << 20)) for _ in range(c)], dtype=np.int64)
    lo, hi = output_range(out_bits, out_signed)
    y = np.zeros(acc.shape[1:], dtype=np.int64)
    for idx in np.ndindex(*y.shape):
        o = idx[1]
        y[idx] = spec_requant([int(acc[(k,) + idx]) for k in range(dp.n_acc)],
                              [int(v) for v in M[o]], int(B[o]), int(sh[o]), lo, hi)
    manifest = {
        "name": name, "description": "hdl cosim self-made case", "tags": [], "layer": layer,
        "batch": batch, "activation": {"bits": dp.a_bits, "signed": dp.a_signed},
        "weights": {"format": dp.fmt, "bits": dp.w_bits, "e_max": dp.e_max, "arch": dp.arch,
                    "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits},
        "accumulator": {"bits": acc_bits, "natural_bits": natural, "count": dp.n_acc},
        "output": {"bits": out_bits, "signed": out_signed, "lo": lo, "hi": hi},
        "requant": {"rounding": "ties_toward_plus_inf", "m_bits": 16},
        "scales": {"s": 0.1, "beta": 1.0, "s_out": 0.1},
    }
    c_out = ws[0]
    arrays = {"x": x, "w": w, "M": M, "B": B, "sh": sh, "acc": acc, "y": y,
              "alpha": np.ones(c_out), "bias": np.zeros(c_out), "y_float": np.zeros(y.shape)}
    path = Path(directory) / f"{name}.npz"
    write_case(path, manifest, arrays)
    return path


def conv(ci, co, k, size, stride=1, pad=0, groups=1):
    return {"kind": "conv2d", "in_channels": ci, "out_channels": co, "kernel": [k, k],
            "in_size": [size, size], "stride": stride, "padding": pad, "groups": groups}


def linear(k, c):
    return {"kind": "linear", "in_features": k, "out_features": c}


OWN = [
    ("uniform4_linear", Datapath("uniform", 4, 4), linear(37, 5), {}),
    ("uniform4_signed_conv_s2", Datapath("uniform", 4, 4, a_signed=True), conv(3, 4, 3, 6, 2, 1), {"out_signed": True}),
    ("pot4_conv_groups", Datapath("pot", 4, 4), conv(4, 4, 3, 5, 1, 1, 2), {}),
    ("post4_lut_conv", Datapath("post", 4, 4, arch="lut"), conv(3, 3, 3, 5, 1, 1), {}),
    ("post4_split_conv_dw", Datapath("post", 4, 4, arch="split"), conv(4, 4, 3, 5, 2, 1, 4), {}),
    ("post4_split_linear_eq17", Datapath("post", 4, 4, arch="split", e_max=7), linear(40, 3), {"out_bits": 8, "out_signed": True}),
    ("post3_split_linear_wrap", Datapath("post", 3, 3, arch="split"), linear(50, 2), {"acc_bits": 5}),
    ("pot5_linear_wrap", Datapath("pot", 5, 5), linear(33, 3), {"acc_bits": 9, "batch": 2}),
    ("post4_split_linear_k3", Datapath("post", 4, 4, arch="split"), linear(3, 5), {"batch": 3}),
]


@pytest.fixture(scope="module")
def own_cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("own_cases")
    for i, (name, dp, layer, kw) in enumerate(OWN):
        make_case(d, name, dp, layer, seed=i, **kw)
    return load_cases([d])


def named(cases, name):
    return next(c for c in cases if c.name == name)


def mismatches(cases, results):
    return [(r, res.missing) for r, res in ((compare(c, res.acc, res.y, label="rtl:"), res)
                                            for c, res in zip(cases, results)) if not r.ok or res.missing]


def test_own_cases_match_under_verilator(own_cases):
    results = run_cases_rtl(own_cases, lanes=4, simulator="verilator")
    assert mismatches(own_cases, results) == []
    assert all(r.cycles > 0 for r in results)


def test_own_cases_match_under_amaranth_simulator(own_cases):
    small = [c for c in own_cases if c.name in ("uniform4_linear", "post4_split_conv_dw", "pot5_linear_wrap")]
    results = run_cases_rtl(small, lanes=4, simulator="amaranth")
    assert len(results) == 3
    assert mismatches(small, results) == []


@pytest.mark.parametrize("schedule", ["any", "grouped"])
def test_both_schedules_match_for_shift_based_archs(own_cases, schedule):
    shifty = [c for c in own_cases if c.datapath.arch in ("shift", "split")]
    results = run_cases_rtl(shifty, lanes=4, schedule=schedule, simulator="verilator")
    assert mismatches(shifty, results) == []


def test_one_lane_matches(own_cases):
    some = [c for c in own_cases if c.name in ("post4_split_conv_dw", "post4_lut_conv")]
    results = run_cases_rtl(some, lanes=1, simulator="verilator")
    assert len(results) == 2
    assert mismatches(some, results) == []


def test_altered_expected_y_is_reported_as_mismatch(own_cases):
    case = named(own_cases, "uniform4_linear")
    result = run_cases_rtl([case], lanes=4, simulator="verilator")[0]
    altered = read_case(case.path)
    y = altered.arrays["y"].copy()
    y.flat[2] ^= 1
    altered.arrays["y"] = y
    report = compare(altered, result.acc, result.y, label="rtl:")
    assert not report.ok and [m.array for m in report.listed] == ["rtl:y"]
    assert compare(case, result.acc, result.y).ok


def test_altered_expected_acc_is_reported_as_mismatch(own_cases):
    case = named(own_cases, "post4_split_conv_dw")
    result = run_cases_rtl([case], lanes=4, simulator="verilator")[0]
    altered = read_case(case.path)
    acc = altered.arrays["acc"].copy()
    acc.flat[-1] += 1
    altered.arrays["acc"] = acc
    report = compare(altered, result.acc, result.y, label="rtl:")
    assert not report.ok and [m.array for m in report.listed] == ["rtl:acc"]


def test_result_carries_shapes_cycles_and_timing(own_cases):
    case = named(own_cases, "uniform4_signed_conv_s2")
    res = run_cases_rtl([case], lanes=4, simulator="verilator")[0]
    assert res.name == case.name and res.simulator == "verilator"
    assert res.acc.shape == case["acc"].shape and res.acc.dtype == np.int64
    assert res.y.shape == case["y"].shape and res.y.dtype == np.int16
    assert res.cycles >= case.n_outputs and res.wall_s > 0 and res.missing == 0


def test_golden_corpus_matches_under_verilator():
    files = sorted(CORPUS.glob("*.npz"))
    assert files, f"no bundled golden cases in {CORPUS}"
    cases = load_cases([CORPUS])
    results = run_cases_rtl(cases, simulator="verilator")
    assert mismatches(cases, results) == []


@pytest.mark.parametrize("pipeline", [0, 3])
def test_single_beat_dot_products_back_to_back_keep_their_channel_params(own_cases, pipeline):
    case = named(own_cases, "post4_split_linear_k3")  # K=3 < lanes: one beat per output
    results = run_cases_rtl([case], lanes=4, simulator="amaranth", pipeline=pipeline)
    assert mismatches([case], results) == []


def test_auto_schedule_groups_shift_based_archs_only():
    from asqhw.hdl.cosim import auto_schedule

    assert auto_schedule(Datapath("pot", 4, 4)) == "grouped"
    assert auto_schedule(Datapath("post", 4, 4, arch="split")) == "grouped"
    assert auto_schedule(Datapath("post", 4, 4, arch="lut")) == "any"
    assert auto_schedule(Datapath("uniform", 4, 4)) == "any"


def test_rejects_unknown_simulator_and_impossible_schedule(own_cases):
    from asqhw.core.errors import UserError

    with pytest.raises(UserError, match="simulator"):
        run_cases_rtl(own_cases[:1], simulator="icarus")
    with pytest.raises(UserError, match="grouped"):
        run_cases_rtl([named(own_cases, "post4_lut_conv")], schedule="grouped")


@pytest.mark.parametrize("simulator", ["amaranth", "verilator"])
def test_uniform_cases_match_in_the_grouped_schedule(own_cases, simulator):
    uniform = [c for c in own_cases if c.datapath.fmt == "uniform"]
    assert uniform
    results = run_cases_rtl(uniform, lanes=4, schedule="grouped", simulator=simulator)
    assert all(r.schedule == "grouped" for r in results)
    assert mismatches(uniform, results) == []
