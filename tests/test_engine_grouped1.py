"""The ``grouped1`` engine schedule: post split with one accumulator per lane.

Each tile issues the odd-exponent terms (``acc_1``), parks their sum, then the even ones
(``acc_0``) into the same accumulator; the shadow bank receives both and the drain
requantises them as section 4/6 of docs/datapath.md say. Checked against the spec's
direct reading (``spec_reading``), through Verilator, with the cycle model exact.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.core.vectors import load_cases

from spec_reading import spec_product, spec_wrap
from test_engine import ACC_BITS, LANES, OUT_BITS, SWEEP_SHAPES, _layer_data, spec_layer_y
from asqhw.hdl.engine.cosim import (DEFAULT_DEPTHS, build_engine, compare_y, run_cases_engine, run_engine)
from asqhw.hdl.engine.cycles import run_cycles
from asqhw.hdl.engine.emit import generate, module_name
from asqhw.hdl.engine.expect import expected_entries, sample_codes
from asqhw.hdl.engine.params import EngineConfig
from asqhw.hdl.engine.program import channel_entries, channel_entry_counts
from asqhw.hdl.verilator import lint

CORPUS = Path(__file__).resolve().parent.parent / "asqhw" / "golden" / "vectors"
DP = Datapath("post", 4, 4, arch="split")
GOLDEN = ["post4_split_lin72", "post4_split_conv3x3_s2_p1", "post4_split_conv3x3_s1_p1_zeros",
          "post4_split_acc12_wrap_conv_wrap", "post3_e3_split_edge_lin_zeros", "post4_split_conv7x7_s2_p3_g2"]


def _ecfg(dp=DP, **kw):
    return EngineConfig(dp, LANES, ACC_BITS, OUT_BITS, False, "grouped1", **{**DEFAULT_DEPTHS, **kw})


def lane_sums(entries, acts, acc_bits=ACC_BITS):
    """Run one lane over a channel's entries as docs/engine.md says: ``(acc_0, acc_1)``.

    ``acts[i]`` is the activation at offset ``i``; bits: neg 0, zero 1, dbl 2, park 3.
    """
    acc, park, restart = 0, None, True
    for word in entries:
        neg, zero, dbl, pk = (word >> b & 1 for b in range(4))
        p = 0 if zero else (-acts[word >> 4] if neg else acts[word >> 4])
        acc = spec_wrap((0 if restart else (2 * acc if dbl else acc)) + p, acc_bits)
        restart = bool(pk)
        if pk:
            park = acc
    return acc, park


def test_grouped1_is_for_post_split_only():
    for dp in (Datapath("post", 4, 4, arch="lut"), Datapath("pot", 4, 3), Datapath("uniform", 4, 4)):
        with pytest.raises(UserError, match="grouped1"):
            _ecfg(dp)
    assert _ecfg().payload_bits == 4 and _ecfg().n_acc == 2


def test_term_list_gives_the_spec_sums_odd_first_then_even():
    rng = np.random.default_rng(5)
    e = _ecfg()
    for trial in range(200):
        k = int(rng.integers(1, 40))
        codes = sample_codes(DP, (k,), rng)
        if trial % 7 == 0:
            codes[:] = 0
        if trial % 5 == 1:      # only even, or only odd exponents
            codes = np.where(((codes & 7) - 1) % 2 == trial % 2, 0, codes)
        acts = rng.integers(0, 16, k)
        words = channel_entries(e, codes, np.arange(k))
        want = [0, 0]
        for a, c in zip(acts, codes):
            p, acc = spec_product(DP, int(a), int(c))
            want[acc] += p
        assert lane_sums(words, acts) == (spec_wrap(want[0], ACC_BITS), spec_wrap(want[1], ACC_BITS))
        parks = [i for i, w in enumerate(words) if w >> 3 & 1]
        assert len(parks) == 1 and parks[0] < len(words) - 1      # one park, never the last entry


def test_a_list_without_its_park_bit_gives_other_sums():
    codes = np.array([1 | 2, 1 | 1, 2, 4, 8 | 3])       # odd and even exponents, both signs
    acts = np.arange(3, 8)
    words = channel_entries(_ecfg(), codes, np.arange(5))
    good = lane_sums(words, acts)
    assert good != lane_sums([w & ~8 for w in words], acts)
    assert good != lane_sums([w & ~8 for w in words[:-1]] + [words[-1] | 8], acts)


def test_expected_entries_match_sampled_lists():
    rng = np.random.default_rng(2)
    e = _ecfg()
    for fan_in in (9, 72):
        w = sample_codes(DP, (4000, fan_in), rng)
        mean = float(np.mean(channel_entry_counts(e, w)))
        assert abs(expected_entries(e, fan_in) - mean) < 0.02 * mean


@pytest.fixture(scope="module")
def corpus():
    return {c.name: c for c in load_cases([CORPUS])}


@pytest.fixture(scope="module")
def golden(corpus):
    return dict(zip(GOLDEN, run_cases_engine([corpus[n] for n in GOLDEN], lanes=LANES, schedule="grouped1")))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_post_split_case_is_bit_exact_and_cycle_exact(corpus, golden, name):
    r = golden[name]
    rep = compare_y(corpus[name], r.y)
    assert r.missing == 0 and rep.mismatches == 0, [str(m) for m in rep.listed]
    assert r.cycles == r.estimate


def test_a_mutated_expected_output_is_reported(corpus, golden):
    case = corpus["post4_split_lin72"]
    y = golden["post4_split_lin72"].y.copy()
    y.flat[3] ^= 1
    assert compare_y(case, y).mismatches == 1


def test_sweep_is_bit_exact_and_cycle_exact():
    ecfg = _ecfg()
    exe, sidecar = build_engine(ecfg)
    rng = np.random.default_rng(11)
    for shape in SWEEP_SHAPES:
        x, w, M, B, sh = _layer_data(DP, shape, rng)
        y, cycles, est, missing, _ = run_engine(ecfg, exe, sidecar, shape, x, w, M, B, sh)
        assert missing == 0 and np.array_equal(y, spec_layer_y(DP, shape, x, w, M, B, sh)), shape.describe()
        assert cycles == est == run_cycles(LANES, shape.engine_geometry, channel_entry_counts(ecfg, w)).cycles


def test_grouped1_verilog_is_lint_clean(tmp_path):
    ecfg = EngineConfig(Datapath("post", 8, 4, arch="split", a_signed=True), 8, 20, 8, True, "grouped1",
                        act_depth=256, term_depth=256, out_depth=256, max_channels=8)
    vpath, jpath, _ = generate(ecfg, tmp_path)
    lint(vpath, module_name(ecfg))
    term = json.loads(jpath.read_text())["memories"]["term"]
    assert term["list"]["all_zero_channel"].startswith("two entries")
    fields = {f["name"]: f["offset"] for f in term["payload_fields"]}
    assert fields == {"neg": 0, "zero": 1, "dbl": 2, "park": 3}
