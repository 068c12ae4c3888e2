"""golden.corpus: the committed corpus regenerates byte for byte and covers what it claims."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.vectors import load_cases
from asqhw.golden import VECTORS_DIR, intref
from asqhw.golden.corpus import config_key, corpus_specs, export_corpus


@pytest.fixture(scope="module")
def cases():
    return load_cases([VECTORS_DIR])


@pytest.fixture(scope="module")
def index():
    return json.loads((VECTORS_DIR / "index.json").read_text())


def tagged(cases, tag):
    found = [c for c in cases if tag in c.manifest["tags"]]
    assert found, f"no case tagged {tag}"
    return found


# --- regeneration ---------------------------------------------------------------------
def test_exporting_seed_0_reproduces_every_committed_file(tmp_path, index):
    results = export_corpus(tmp_path, seed=0)
    assert [r["name"] for r in results] == [e["name"] for e in index["cases"]]
    for r, e in zip(results, index["cases"]):
        assert r["sha256"] == e["sha256"], r["name"]
        assert (tmp_path / e["file"]).read_bytes() == (VECTORS_DIR / e["file"]).read_bytes()
    assert (tmp_path / "index.json").read_bytes() == (VECTORS_DIR / "index.json").read_bytes()


def test_index_lists_exactly_the_committed_files(index):
    listed = {e["file"] for e in index["cases"]}
    assert listed == {p.name for p in VECTORS_DIR.glob("*.npz")}
    for e in index["cases"]:
        assert hashlib.sha256((VECTORS_DIR / e["file"]).read_bytes()).hexdigest() == e["sha256"]
    assert index["seed"] == 0


def test_every_committed_case_matches_the_reference(cases):
    for c in cases:
        acc, y = intref.reference(c.manifest, c.arrays)
        assert np.array_equal(acc, c["acc"]) and np.array_equal(y, c["y"]), c.name


# --- export_corpus behaviour ------------------------------------------------------------
def test_refuses_to_overwrite_a_different_file(tmp_path):
    name = corpus_specs()[0].name
    export_corpus(tmp_path, names=[name])
    target = tmp_path / f"{name}.npz"
    target.write_bytes(b"changed")
    with pytest.raises(UserError, match=f"{name}.npz"):
        export_corpus(tmp_path, names=[name])
    assert target.read_bytes() == b"changed"


def test_force_overwrites_a_different_file(tmp_path):
    name = corpus_specs()[0].name
    sha = export_corpus(tmp_path, names=[name])[0]["sha256"]
    (tmp_path / f"{name}.npz").write_bytes(b"changed")
    export_corpus(tmp_path, names=[name], force=True)
    assert hashlib.sha256((tmp_path / f"{name}.npz").read_bytes()).hexdigest() == sha


def test_rewriting_identical_files_is_allowed(tmp_path):
    name = corpus_specs()[0].name
    first = export_corpus(tmp_path, names=[name])
    assert export_corpus(tmp_path, names=[name]) == first


def test_progress_is_called_once_per_case(tmp_path):
    names = [s.name for s in corpus_specs()[:3]]
    calls = []
    export_corpus(tmp_path, names=names, progress=lambda i, n, name: calls.append((i, n, name)))
    assert calls == [(i, 3, n) for i, n in enumerate(names)]


def test_unknown_case_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no_such_case"):
        export_corpus(tmp_path, names=["no_such_case"])


def test_other_seed_gives_other_data(tmp_path):
    name = corpus_specs()[0].name
    assert export_corpus(tmp_path, names=[name], seed=1)[0]["sha256"] != \
        json.loads((VECTORS_DIR / "index.json").read_text())["cases"][0]["sha256"]


# --- size budget ------------------------------------------------------------------------
def test_corpus_size_and_case_count_are_within_budget(cases):
    total_bytes = sum(p.stat().st_size for p in VECTORS_DIR.glob("*.npz"))
    outputs = sum(c.n_outputs for c in cases)
    assert 60 <= len(cases) <= 90
    assert 20_000 <= outputs <= 60_000
    assert total_bytes < 3_000_000


def test_distinct_hardware_configurations_are_few(cases):
    keys = {config_key(c.manifest) for c in cases}
    assert len(keys) <= 30
    assert keys == {config_key(s) for s in corpus_specs()}


def test_case_names_are_unique(cases):
    assert len({c.name for c in cases}) == len(cases)


# --- coverage -----------------------------------------------------------------------------
def _weights(cases):
    return {(c.manifest["weights"]["format"], c.manifest["weights"]["bits"], c.manifest["weights"]["e_max"],
             c.manifest["weights"]["arch"]) for c in cases}


def test_uniform_weight_widths_are_covered(cases):
    assert {b for f, b, _, _ in _weights(cases) if f == "uniform"} >= {2, 3, 4, 8}


@pytest.mark.parametrize("fmt", ["pot", "post"])
@pytest.mark.parametrize("bits", [3, 4])
def test_power_formats_cover_both_e_max_choices(cases, fmt, bits):
    e = {em for f, b, em, _ in _weights(cases) if f == fmt and b == bits}
    assert e >= {2 ** (bits - 1) - 2, 2 ** (bits - 1) - 1}


@pytest.mark.parametrize("bits", [3, 4])
def test_post_covers_both_archs_for_both_e_max(cases, bits):
    for em in (2 ** (bits - 1) - 2, 2 ** (bits - 1) - 1):
        assert {a for f, b, e, a in _weights(cases) if f == "post" and b == bits and e == em} == {"lut", "split"}


def test_a_lut_with_more_than_the_default_fraction_bits_exists(cases):
    assert any(c.manifest["weights"]["arch"] == "lut"
               and c.manifest["weights"]["frac_bits"] > -(-c.manifest["weights"]["e_max"] // 2) + 2 for c in cases)


def test_activation_widths_and_a_signed_8_bit_input_are_covered(cases):
    assert {c.manifest["activation"]["bits"] for c in cases} >= {2, 3, 4, 8}
    assert any(c.manifest["activation"] == {"bits": 8, "signed": True} for c in cases)


def test_layer_shapes_are_covered(cases):
    convs = [c.layer for c in cases if c.layer["kind"] == "conv2d"]
    assert any(c.layer["kind"] == "linear" for c in cases)
    assert {L["kernel"][0] for L in convs} >= {1, 3, 7}
    assert {L["stride"] for L in convs} >= {1, 2}
    assert {L["padding"] for L in convs} >= {0, 1, 3}
    assert any(L["groups"] == L["in_channels"] == L["out_channels"] > 1 for L in convs)
    assert any(1 < L["groups"] < L["in_channels"] for L in convs)
    assert any(c.manifest["batch"] > 1 for c in cases)


def test_outputs_are_4_and_8_bit_signed_and_unsigned(cases):
    outs = {(c.manifest["output"]["bits"], c.manifest["output"]["signed"]) for c in cases}
    assert {(4, False), (8, False), (8, True)} <= outs


# --- edge cases ------------------------------------------------------------------------------
def test_act_max_cases_hold_only_the_largest_magnitude(cases):
    for c in tagged(cases, "edge:act-max"):
        dp = c.datapath
        assert (c["x"] == (dp.a_range[0] if dp.a_signed else dp.a_range[1])).all(), c.name


def test_worst_case_accumulators_reach_k_times_p_max(cases):
    signs = set()
    for c in tagged(cases, "edge:acc-worst-case"):
        a0 = c["acc"][0]
        if c.layer["kind"] == "conv2d" and c.layer["padding"]:
            a0 = a0[..., c.layer["padding"]:-c.layer["padding"], c.layer["padding"]:-c.layer["padding"]]
        worst = c.fan_in * c.datapath.p_max
        assert np.abs(a0).max() == worst and (np.abs(a0) == worst).all(), c.name
        signs.add(int(np.sign(a0.flat[0])))
    assert signs == {1, -1}


def test_wrap_cases_do_wrap(cases):
    for c in tagged(cases, "edge:acc-wrap"):
        natural = c.manifest["accumulator"]["natural_bits"]
        assert c.acc_bits < natural
        m = dict(c.manifest, accumulator=dict(c.manifest["accumulator"], bits=natural))
        full, _ = intref.reference(m, c.arrays)
        assert (full != c["acc"]).any(), c.name
        assert np.array_equal(intref.wrap(full, c.acc_bits).numpy(), c["acc"])


def test_saturation_cases_hit_both_ends(cases):
    for c in tagged(cases, "edge:saturate"):
        lo, hi = c.out_range
        assert (c["y"] == lo).any() and (c["y"] == hi).any(), c.name


def test_ties_cases_hold_exact_half_boundaries_that_decide_the_output(cases):
    for c in tagged(cases, "edge:ties"):
        acc, M, B, sh = c["acc"], c["M"], c["B"], c["sh"]
        view = (-1,) + (1,) * (acc.ndim - 3)
        t = sum(M[:, k].reshape(view) * acc[k] for k in range(acc.shape[0])) + B.reshape(view)
        shb = np.broadcast_to(sh.reshape(view), t.shape)
        tie = (shb >= 1) & ((t & ((1 << shb) - 1)) == (1 << np.maximum(shb - 1, 0)))
        lo, hi = c.out_range
        r = (t + (1 << np.maximum(shb - 1, 0))) >> shb
        assert (tie & (r > lo) & (r <= hi)).sum() >= 10, c.name


def test_zero_weight_cases_hold_both_zero_code_words(cases):
    for c in tagged(cases, "edge:zero-weights"):
        dp = c.datapath
        assert (c["w"] == 0).any() and (c["w"] == 1 << dp.m_bits).any(), c.name


def test_outputs_agree_with_the_float_layer_within_the_spec_error_bound(cases):
    # docs/datapath.md section 7: the code is the correctly rounded one or a neighbour; lut adds
    # up to K/2 * 2^-F * s_in * alpha_c / s_out output LSBs
    for c in cases:
        if "edge:acc-wrap" in c.manifest["tags"]:
            continue
        sc, lo, hi = c.manifest["scales"], *c.out_range
        want = np.clip(np.round(c["y_float"].astype(np.float64) / sc["s_out"]), lo, hi)
        slack = np.ones(c["alpha"].shape)
        if c.datapath.arch == "lut":
            slack += c.fan_in / 2 * 2.0 ** -c.datapath.frac_bits * sc["s"] * sc["beta"] * c["alpha"] / sc["s_out"]
        view = (1, -1) + (1,) * (c["y"].ndim - 2)
        assert (np.abs(c["y"] - want) <= slack.reshape(view) + 1e-9).all(), c.name
