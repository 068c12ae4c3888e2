"""golden.export: requantisation constants, case building and deterministic files."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from asqhw.core.errors import UserError
from asqhw.core.vectors import read_case
from asqhw.golden import intref
from asqhw.golden.corpus import large_case_spec
from asqhw.golden.export import CaseSpec, acc_units, build_case, conv2d, export_case, linear, requant_constants


def spec(**over) -> CaseSpec:
    base = dict(name="t_post4_split_conv", description="test", layer=conv2d(8, 4, 3, 6, stride=2, padding=1),
                fmt="post", a_bits=4, w_bits=4, arch="split", batch=2, seed=123)
    base.update(over)
    return CaseSpec(**base)


# --- section 7 --------------------------------------------------------------------
def test_half_scale_gives_m_32768_and_sh_16():
    assert requant_constants([0.5], 0.0) == ([32768], 0, 16)


def test_sh_is_the_largest_keeping_m_within_16_bits():
    M, _, sh = requant_constants([0.7], 0.0)
    assert M[0] <= 65535 and round(0.7 * 2 ** (sh + 1)) > 65535


def test_multiplier_rounds_half_to_even():
    # 65534.5 rounds to 65534 (even), so sh = 0 is allowed
    assert requant_constants([65534.5], 0.0) == ([65534], 0, 0)


def test_scale_too_large_for_16_bits_is_an_error():
    with pytest.raises(UserError, match="65535"):
        requant_constants([65535.6], 0.0)


def test_tiny_scale_uses_the_largest_shift():
    assert requant_constants([1e-30], 0.0)[2] == 62


def test_bias_outside_48_bits_is_an_error():
    with pytest.raises(UserError, match="48-bit"):
        requant_constants([0.5], 2.0**40)


def test_split_multipliers_keep_the_sqrt2_ratio():
    M, _, _ = requant_constants([0.3, 0.3 / math.sqrt(2)], 0.0)
    assert abs(M[0] / M[1] - math.sqrt(2)) < 1e-4


def test_split_units_differ_by_sqrt2():
    from asqhw.core.params import Datapath

    u0, u1 = acc_units(Datapath("post", 4, 4, arch="split"))
    assert u0 == 2.0**-3 and u1 == pytest.approx(u0 / math.sqrt(2))


# --- building cases ------------------------------------------------------------------
def test_export_twice_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    sha_a, sha_b = export_case(spec(), a), export_case(spec(), b)
    assert sha_a == sha_b == hashlib.sha256(a.read_bytes()).hexdigest()
    assert a.read_bytes() == b.read_bytes()


def test_a_different_seed_gives_different_data(tmp_path):
    assert export_case(spec(), tmp_path / "a.npz") != export_case(spec(seed=124), tmp_path / "b.npz")


def test_exported_case_reads_back_and_matches_the_reference(tmp_path):
    export_case(spec(), tmp_path / "c.npz")
    case = read_case(tmp_path / "c.npz")
    acc, y = intref.reference(case.manifest, case.arrays)
    assert np.array_equal(acc, case["acc"]) and np.array_equal(y, case["y"])


@pytest.mark.parametrize("over", [dict(), dict(fmt="uniform", arch=None), dict(fmt="pot", arch=None)])
def test_integer_output_is_within_one_code_of_the_float_layer(over):
    manifest, arrays = build_case(spec(**over))
    lo, hi = manifest["output"]["lo"], manifest["output"]["hi"]
    want = np.clip(np.round(arrays["y_float"].astype(np.float64) / manifest["scales"]["s_out"]), lo, hi)
    assert np.abs(arrays["y"] - want).max() <= 1


def test_y_float_is_the_float_layer_of_the_dequantised_codes():
    manifest, arrays = build_case(spec(fmt="uniform", arch=None, layer=linear(5, 3)))
    s = manifest["scales"]
    x = arrays["x"] * s["s"] * s["beta"]
    w = arrays["w"] * arrays["alpha"][:, None]
    assert np.allclose(arrays["y_float"], x @ w.T + arrays["bias"], rtol=1e-6, atol=1e-6)


def test_activation_fill_max_sets_every_code_to_the_largest_magnitude():
    _, arrays = build_case(spec(x_fill="max"))
    assert (arrays["x"] == 15).all()


def test_signed_activation_fill_max_is_the_most_negative_code():
    _, arrays = build_case(spec(x_fill="max", a_bits=8, a_signed=True))
    assert (arrays["x"] == -128).all()


def test_zeros_fill_gives_both_zero_code_words():
    _, arrays = build_case(spec(w_fill="zeros"))
    assert (arrays["w"] == 0).any() and (arrays["w"] == 8).any()


def test_accumulator_wider_than_natural_is_rejected():
    with pytest.raises(UserError, match="accumulator bits"):
        build_case(spec(acc_bits=30))


def test_unknown_fill_is_rejected():
    with pytest.raises(UserError, match="w_fill"):
        build_case(spec(w_fill="ones"))


def test_invalid_datapath_is_rejected_with_a_user_error():
    with pytest.raises(UserError, match="arch"):
        build_case(spec(arch="shift"))


def test_large_case_spec_exports_a_real_layer_size(tmp_path):
    s = large_case_spec("big", layer=conv2d(64, 64, 3, 16, padding=1), fmt="post", a_bits=4, w_bits=4,
                        arch="lut", batch=2)
    export_case(s, tmp_path / "big.npz")
    case = read_case(tmp_path / "big.npz")
    assert case["y"].shape == (2, 64, 16, 16)
