"""sim.requant: docs/datapath.md section 6 (ties toward plus infinity, clamp)."""

import numpy as np
import pytest

from asqhw import sim
from asqhw.core.errors import UserError


def one(acc, m=1, b=0, sh=0, lo=-(2**15), hi=2**15 - 1):
    """Requantise a single accumulator value of a one-channel, one-accumulator layer."""
    y = sim.requant(np.array([[[acc]]], dtype=np.int64), [[m]], [b], [sh], lo, hi)
    return int(y[0, 0])


@pytest.mark.parametrize(("t", "expected"), [(3, 2), (-3, -1), (5, 3), (-5, -2), (1, 1), (-1, 0)])
def test_ties_round_toward_plus_infinity(t, expected):
    assert one(t, sh=1) == expected               # t / 2 = 1.5 -> 2, -1.5 -> -1, ...


def test_non_ties_round_to_nearest():
    assert [one(t, sh=2) for t in (-7, -6, -5, 5, 6, 7)] == [-2, -1, -1, 1, 2, 2]   # /4: -1.75 -1.5 -1.25 ...


def test_shift_zero_takes_t_unchanged():
    assert one(-12345, sh=0) == -12345


def test_clamps_to_output_range():
    assert (one(100, lo=0, hi=15), one(-100, lo=0, hi=15), one(-100, lo=-8, hi=7)) == (15, 0, -8)


def test_multipliers_weight_each_accumulator_and_bias_adds():
    acc = np.array([[[10]], [[-3]]], dtype=np.int64)            # two accumulators (split)
    y = sim.requant(acc, [[3, 5]], [7], [1], -100, 100)
    assert y.tolist() == [[(3 * 10 - 5 * 3 + 7 + 1) >> 1]]


def test_extreme_operands_are_exact():
    acc = np.array([[[2**39]], [[-(2**39)]]], dtype=np.int64)
    y = sim.requant(acc, [[65535, 1]], [2**47 - 1], [62], -(2**15), 2**15 - 1)
    t = 65535 * 2**39 - 2**39 + 2**47 - 1
    assert int(y[0, 0]) == (t + 2**61) >> 62


def test_per_channel_parameters_apply_per_channel():
    acc = np.array([[[4, 4], [4, 4]]], dtype=np.int64)          # N=2, C=2
    y = sim.requant(acc, [[1], [3]], [0, 0], [0, 2], 0, 15)
    assert y.tolist() == [[4, 3], [4, 3]]


def test_output_dtype_is_int16_for_int16_ranges():
    assert sim.requant(np.zeros((1, 1, 1), np.int64), [[1]], [0], [0], 0, 255).dtype == np.int16


def test_multiplier_outside_16_bits_is_rejected():
    with pytest.raises(UserError, match="65535"):
        sim.requant(np.zeros((1, 1, 1), np.int64), [[65536]], [0], [0], 0, 15)


def test_shift_beyond_62_is_rejected():
    with pytest.raises(UserError, match="0..62"):
        sim.requant(np.zeros((1, 1, 1), np.int64), [[1]], [0], [63], 0, 15)
