# amaranth: UnusedElaboratable=no
"""The layer engine in Verilator: golden layers bit-exact, cycles equal to the model.

One engine build per configuration is shared by all the cases that need it (builds are
cached under $ASQHW_CACHE). The synthetic sweep checks its outputs against a direct
reading of docs/datapath.md (tests/spec_reading.py), not against another implementation.
"""

from pathlib import Path

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.core.vectors import load_cases

from spec_reading import spec_product, spec_wrap
from asqhw.hdl.engine.cosim import (DEFAULT_DEPTHS, build_engine, compare_y, engine_config, run_cases_engine,
                              run_engine)
from asqhw.hdl.engine.cycles import run_cycles
from asqhw.hdl.engine.expect import expected_entries, sample_codes
from asqhw.hdl.engine.params import EngineConfig
from asqhw.hdl.engine.program import LayerShape, build_program, channel_entry_counts

CORPUS = Path(__file__).resolve().parent.parent / "asqhw" / "golden" / "vectors"
LANES = 4

GOLDEN = {  # case -> schedule; each distinct configuration is one Verilator build
    "post4_split_conv3x3_s2_p1": "auto",
    "post4_split_conv7x7_s2_p3_g2": "auto",
    "post4_split_conv3x3_g2": "auto",
    "post4_split_lin72": "auto",
    "post4_split_edge_conv_wmaxneg": "auto",
    "post4_split_conv3x3_s1_p1_zeros": "auto",
    "post4_split_acc12_dw3x3_p1": "auto",
    "post4_lut_conv7x7_p3": "auto",
    "post4_lut_lin72": "auto",
    "pot4_conv3x3_s2_p1": "auto",
    "pot4_lin72": "auto",
    "uni3_conv3x3_s2_p1": "grouped",
    "uni2_conv3x3_s1_p1": "any",
    "uni2_lin72": "any",
}


@pytest.fixture(scope="module")
def corpus():
    return {c.name: c for c in load_cases([CORPUS])}


@pytest.fixture(scope="module")
def golden_results(corpus):
    out = {}
    for sched in ("auto", "any", "grouped"):
        names = [n for n, s in GOLDEN.items() if s == sched]
        for name, res in zip(names, run_cases_engine([corpus[n] for n in names], lanes=LANES,
                                                     schedule=sched)):
            out[name] = res
    return out


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_layer_is_bit_exact_through_the_engine(corpus, golden_results, name):
    res = golden_results[name]
    rep = compare_y(corpus[name], res.y)
    assert res.missing == 0
    assert rep.mismatches == 0, [str(m) for m in rep.listed]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_layer_cycles_equal_the_model(golden_results, name):
    res = golden_results[name]
    assert res.cycles == res.estimate


def test_a_mutated_expected_output_is_reported_with_its_index(corpus, golden_results):
    case = corpus["post4_split_lin72"]
    y = golden_results["post4_split_lin72"].y.copy()
    y[1, 5] += 1
    rep = compare_y(case, y)
    assert rep.mismatches == 1
    assert "post4_split_lin72: engine:y[1,5]" in str(rep.listed[0])


def test_a_mutated_activation_changes_the_engine_output(corpus):
    case = corpus["post4_split_lin72"]
    ecfg = engine_config(case, lanes=LANES)
    exe, sidecar = build_engine(ecfg)
    x = case["x"].copy()
    x[2, 7] = (x[2, 7] + 5) % 16
    from asqhw.hdl.engine.program import shape_of_case

    y, cycles, est, missing, _ = run_engine(ecfg, exe, sidecar, shape_of_case(case), x, case["w"],
                                            case["M"], case["B"], case["sh"])
    assert missing == 0 and cycles == est
    assert compare_y(case, y).mismatches > 0


# --- synthetic sweep: realistic (Gaussian) weights, every layer kind ---------------------
SWEEP_SHAPES = [
    LayerShape("conv2d", 8, 6, h=6, w=6),                                        # 1x1, partial tile
    LayerShape("conv2d", 4, 4, h=5, w=5, kh=3, kw=3, pad=1),                     # 3x3 padded
    LayerShape("conv2d", 4, 8, h=9, w=9, kh=3, kw=3, stride=2, pad=1),           # strided
    LayerShape("conv2d", 8, 8, h=6, w=7, kh=3, kw=3, pad=1, groups=8),           # depthwise
    LayerShape("conv2d", 3, 4, h=7, w=7, kh=5, kw=5, pad=2, n=2),                # 5x5, batch 2
    LayerShape("conv2d", 4, 4, h=8, w=8, kh=3, kw=3, stride=2, groups=2),        # grouped, no pad
    LayerShape("conv2d", 4, 8, h=8, w=8, stride=2),                              # 1x1 projection
    LayerShape("conv2d", 6, 4, h=3, w=3, kh=3, kw=3, stride=3, pad=1),           # stride 3
    LayerShape("linear", 20, 6, n=3),                                            # FC, partial beat
    LayerShape("linear", 9, 5, n=8),                                             # FC, two tiles
]
SWEEP_CONFIGS = {
    "post4-split-grouped": (Datapath("post", 4, 4, arch="split"), "grouped"),
    "pot3-grouped": (Datapath("pot", 4, 3), "grouped"),
    "uniform4-grouped": (Datapath("uniform", 4, 4), "grouped"),
    "uniform4-any": (Datapath("uniform", 4, 4), "any"),
    "post3-lut-any": (Datapath("post", 4, 3, arch="lut"), "any"),
}
ACC_BITS, OUT_BITS = 16, 6


def spec_layer_y(dp, shape, x, w, M, B, sh):
    """y of docs/datapath.md sections 4-8 by direct loops (acc wraps at ACC_BITS)."""
    lo, hi = 0, (1 << OUT_BITS) - 1

    def requant(accs, c):
        t = sum(int(M[c, k]) * a for k, a in enumerate(accs)) + int(B[c])
        s = int(sh[c])
        r = (t + (1 << (s - 1))) >> s if s else t
        return min(max(r, lo), hi)

    def dot(avec, wvec, c):
        s = [0] * dp.n_acc
        for a, code in zip(avec, wvec):
            p, k = spec_product(dp, int(a), int(code))
            s[k] += p
        return requant([spec_wrap(v, ACC_BITS) for v in s], c)

    if shape.kind == "linear":
        return np.array([[dot(x[i], w[c], c) for c in range(shape.c_out)] for i in range(shape.n)])
    p, st = shape.pad, shape.stride
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cg, og = shape.c_in // shape.groups, shape.c_out // shape.groups
    y = np.zeros((shape.n, shape.c_out, shape.h_out, shape.w_out), dtype=np.int64)
    for i in range(shape.n):
        for c in range(shape.c_out):
            g = c // og
            for oy in range(shape.h_out):
                for ox in range(shape.w_out):
                    patch = xp[i, g * cg:(g + 1) * cg, oy * st:oy * st + shape.kh, ox * st:ox * st + shape.kw]
                    y[i, c, oy, ox] = dot(patch.ravel(), w[c].ravel(), c)
    return y


def _layer_data(dp, shape, rng):
    if shape.kind == "linear":
        x = rng.integers(0, 1 << dp.a_bits, (shape.n, shape.c_in))
        w = sample_codes(dp, (shape.c_out, shape.c_in), rng)
    else:
        x = rng.integers(0, 1 << dp.a_bits, (shape.n, shape.c_in, shape.h, shape.w))
        w = sample_codes(dp, (shape.c_out, shape.c_in // shape.groups, shape.kh, shape.kw), rng)
        w[-1] = 0                                     # a channel without nonzero weights
    M = rng.integers(1, 4000, (shape.c_out, dp.n_acc))
    B = rng.integers(-2000, 2000, shape.c_out)
    sh = rng.integers(6, 12, shape.c_out)
    return x, w, M, B, sh


@pytest.fixture(scope="module")
def sweep():
    """Measured and estimated cycles of every (configuration, shape), outputs checked."""
    rows = []
    rng = np.random.default_rng(7)
    for label, (dp, sched) in SWEEP_CONFIGS.items():
        ecfg = EngineConfig(dp, LANES, ACC_BITS, OUT_BITS, False, sched, **DEFAULT_DEPTHS)
        exe, sidecar = build_engine(ecfg)
        for shape in SWEEP_SHAPES:
            x, w, M, B, sh = _layer_data(dp, shape, rng)
            y, cycles, est, missing, _ = run_engine(ecfg, exe, sidecar, shape, x, w, M, B, sh)
            counts = channel_entry_counts(ecfg, w)
            rows.append(dict(label=label, shape=shape, ecfg=ecfg, y=y, missing=missing, cycles=cycles,
                             est=est, counts=counts,
                             expected=spec_layer_y(dp, shape, x, w, M, B, sh)))
    return rows


def test_sweep_outputs_are_bit_exact(sweep):
    bad = [(r["label"], r["shape"].describe()) for r in sweep
           if r["missing"] or not np.array_equal(r["y"], r["expected"])]
    assert not bad


def test_sweep_cycle_model_has_zero_error(sweep):
    assert len(sweep) == len(SWEEP_CONFIGS) * len(SWEEP_SHAPES)
    off = [(r["label"], r["shape"].describe(), r["cycles"], r["est"]) for r in sweep if r["cycles"] != r["est"]]
    assert not off


def test_a_deeper_requantiser_adds_its_stages_to_the_run_and_stays_exact():
    dp = Datapath("post", 4, 4, arch="split")
    ecfg = EngineConfig(dp, LANES, ACC_BITS, OUT_BITS, False, "grouped", rq_pipeline=3, **DEFAULT_DEPTHS)
    exe, sidecar = build_engine(ecfg)
    rng = np.random.default_rng(3)
    for shape in (SWEEP_SHAPES[2], SWEEP_SHAPES[3], SWEEP_SHAPES[8]):
        x, w, M, B, sh = _layer_data(dp, shape, rng)
        y, cycles, est, missing, _ = run_engine(ecfg, exe, sidecar, shape, x, w, M, B, sh)
        counts = channel_entry_counts(ecfg, w)
        assert missing == 0 and np.array_equal(y, spec_layer_y(dp, shape, x, w, M, B, sh))
        assert cycles == est == run_cycles(LANES, shape.engine_geometry, counts).cycles + 2


def test_cycle_model_would_see_one_entry_more(sweep):
    r = sweep[0]
    counts = list(r["counts"])
    counts[0] += 1
    assert run_cycles(LANES, r["shape"].engine_geometry, counts).cycles != r["cycles"]


def test_a_tile_with_fewer_entries_than_lanes_waits_for_the_drain():
    shape = LayerShape("conv2d", 32, 32, h=32, w=32, kh=3, kw=3, pad=1, groups=32)
    res = run_cycles(16, shape.engine_geometry, [9] * 32)
    tiles = 32 * 32 * 2                                  # channels x rows x tiles per row
    # every tile (even across channels: the 2-cycle channel fetch hides under the drain)
    # starts lanes + 1 = 17 cycles after the previous one; the first starts at cycle 3
    assert res.cycles == 3 + (tiles - 1) * 17 + 9 + 16 + 5
    assert res.issue == tiles * 9 and res.stalls == res.cycles - res.issue


# --- host program and expectation model -----------------------------------------------------
@pytest.mark.parametrize("label", ["post4-split-grouped", "pot3-grouped", "uniform4-grouped", "uniform4-any"])
def test_expected_entries_match_sampled_weights(label):
    dp, sched = SWEEP_CONFIGS[label]
    ecfg = EngineConfig(dp, 8, 20, 8, False, sched)
    rng = np.random.default_rng(1)
    for k in (9, 144):
        counts = np.array(channel_entry_counts(ecfg, sample_codes(dp, (3000, k), rng)))
        assert abs(counts.mean() - expected_entries(ecfg, k)) < 4 * counts.std() / np.sqrt(counts.size)


def test_a_layer_too_big_for_the_buffers_is_a_user_error():
    ecfg = EngineConfig(Datapath("post", 4, 4, arch="split"), 4, 16, 8, False, "grouped",
                        act_depth=256, term_depth=256, out_depth=256, max_channels=8)
    shape = LayerShape("conv2d", 8, 4, h=8, w=8, kh=3, kw=3, pad=1)
    x = np.zeros((1, 8, 8, 8), dtype=np.int64)
    w = np.ones((4, 8, 3, 3), dtype=np.int64)
    with pytest.raises(UserError, match="does not fit the engine.*act_depth"):
        build_program(ecfg, shape, x, w, np.ones((4, 2)), np.zeros(4), np.zeros(4))


def test_lanes_must_be_a_power_of_two():
    with pytest.raises(UserError, match="power of two"):
        EngineConfig(Datapath("uniform", 4, 4), 6, 16, 8, False)


def test_grouped_lut_is_refused():
    with pytest.raises(UserError, match="grouped"):
        EngineConfig(Datapath("post", 4, 4, arch="lut"), 4, 16, 8, False, "grouped")
