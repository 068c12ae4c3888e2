"""Datapath parameters: ranges, defaults and derived widths of docs/datapath.md."""

import pytest

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath


def test_default_e_max_fits_b_w_bits():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split")
    assert (dp.e_max, dp.m_bits, dp.storage_bits) == (6, 3, 4)


def test_eq17_e_max_needs_one_more_storage_bit():
    dp = Datapath(fmt="post", a_bits=4, w_bits=4, arch="split", e_max=7)
    assert (dp.m_bits, dp.storage_bits) == (4, 5)


def test_split_uses_floor_half_e_max_fraction_bits():
    assert Datapath(fmt="post", a_bits=4, w_bits=4, arch="split", e_max=7).frac_bits == 3


def test_lut_default_f_is_ceil_half_e_max_plus_two():
    assert Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut", e_max=7).frac_bits == 6


def test_lut_rejects_f_below_ceil_half_e_max():
    with pytest.raises(UserError, match="frac_bits"):
        Datapath(fmt="post", a_bits=4, w_bits=4, arch="lut", e_max=7, frac_bits=3)


@pytest.mark.parametrize("a_bits", [1, 9])
def test_impossible_activation_width_is_rejected(a_bits):
    with pytest.raises(UserError, match="activation bits"):
        Datapath(fmt="uniform", a_bits=a_bits, w_bits=4)


def test_e_max_beyond_eq17_is_rejected():
    with pytest.raises(UserError, match="e_max"):
        Datapath(fmt="pot", a_bits=4, w_bits=3, e_max=4)


def test_arch_must_match_format():
    with pytest.raises(UserError, match="arch"):
        Datapath(fmt="uniform", a_bits=4, w_bits=4, arch="split")


@pytest.mark.parametrize("fmt,arch,p_max", [
    ("uniform", "mul", 15 * 8), ("pot", "shift", 15 << 6), ("post", "lut", 15 << 5), ("post", "split", 15 << 3)])
def test_largest_product_per_arch(fmt, arch, p_max):
    assert Datapath(fmt=fmt, a_bits=4, w_bits=4, arch=arch).p_max == p_max


def test_natural_width_holds_worst_case_sum_with_sign_bit():
    dp = Datapath(fmt="uniform", a_bits=8, w_bits=8)
    bits = dp.natural_acc_bits(4608)
    assert 4608 * 255 * 128 <= 2 ** (bits - 1) - 1 < 2 * 4608 * 255 * 128


def test_signed_activations_have_largest_magnitude_two_to_b_minus_one():
    dp = Datapath(fmt="uniform", a_bits=8, w_bits=8, a_signed=True)
    assert dp.a_range == (-128, 127) and dp.a_max == 128


def test_lut_beyond_e_max_32_is_rejected_with_a_clear_reason():
    with pytest.raises(UserError, match="use e_max <= 32 or the split architecture"):
        Datapath(fmt="post", a_bits=4, w_bits=7, arch="lut")


def test_lut_default_f_is_capped_at_sixteen():
    assert Datapath(fmt="post", a_bits=4, w_bits=7, arch="lut", e_max=30).frac_bits == 16
