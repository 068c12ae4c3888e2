"""golden.quant: LSQ, POT/POST and ASQ fake quantisers (levels, codes, gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from asqhw.golden.quant import (AsqActivation, LsqWeight, PowerWeight, asq_fake_quant, power_codes,
                          power_decode, power_levels)

F64 = torch.float64


# --- levels and codes -------------------------------------------------------
@pytest.mark.parametrize("fmt, bits, e_max, n_levels, m_bits", [
    ("post", 4, None, 15, 3), ("post", 4, 7, 17, 4), ("pot", 3, None, 7, 2), ("pot", 3, 3, 9, 3),
])
def test_power_weight_has_the_level_count_and_code_width_of_its_e_max(fmt, bits, e_max, n_levels, m_bits):
    q = PowerWeight(fmt, bits, 1, e_max)
    codes = torch.arange(0, 2 ** (m_bits + 1))
    codes = codes[(codes & ((1 << m_bits) - 1)) <= q.e_max + 1]
    values = set(power_decode(codes, fmt, q.e_max, q.m_bits).tolist())
    assert q.m_bits == m_bits
    assert len(values) == n_levels


def test_post_levels_are_powers_of_sqrt2():
    lv = power_levels("post", 6)
    assert lv[0] == 0
    assert torch.allclose(lv[1:], torch.tensor([math.sqrt(2) ** -w for w in range(6, -1, -1)], dtype=F64))


def test_pot_levels_are_powers_of_two():
    assert power_levels("pot", 3).tolist() == [0.0, 0.125, 0.25, 0.5, 1.0]


def test_power_codes_pick_the_nearest_level_in_the_linear_domain():
    g = torch.Generator().manual_seed(1)
    v = torch.rand(2000, generator=g, dtype=F64) * 2.4 - 1.2
    for fmt in ("pot", "post"):
        codes = power_codes(v, fmt, 6, 3)
        got = power_decode(codes, fmt, 6, 3)
        lv = power_levels(fmt, 6)
        allv = torch.cat([-lv, lv])
        best = allv[(v.clamp(-1, 1)[:, None] - allv[None]).abs().argmin(1)]
        assert torch.equal(got.abs(), best.abs())


def test_power_codes_round_trip_except_minus_zero():
    codes = torch.arange(16)
    codes = codes[(codes & 7) <= 7]
    back = power_codes(power_decode(codes, "post", 6, 3), "post", 6, 3)
    assert back[codes == 8].tolist() == [0]  # "-0" decodes to 0, which encodes as +0
    keep = codes != 8
    assert torch.equal(back[keep], codes[keep])


def test_negative_value_rounding_to_zero_gives_minus_zero_code():
    assert power_codes(torch.tensor([-0.01, 0.01], dtype=F64), "post", 6, 3).tolist() == [8, 0]


def test_minus_zero_decodes_to_zero():
    assert power_decode(torch.tensor([8]), "pot", 6, 3).abs().tolist() == [0.0]


def test_power_codes_clamp_to_unit_range():
    assert power_codes(torch.tensor([3.0, -3.0], dtype=F64), "pot", 6, 3).tolist() == [1, 9]


def test_code_word_layout_is_sign_then_magnitude_index():
    # post, E_max = 6, m_bits = 3: -sqrt(2)^-1 has W = 1, m = 2, sign bit 1 -> 0b1010
    assert power_codes(torch.tensor([-(2 ** -0.5)], dtype=F64), "post", 6, 3).tolist() == [10]


def test_power_weight_init_is_99th_percentile_per_channel():
    w = torch.arange(1, 201, dtype=F64).reshape(2, 100)
    q = PowerWeight("post", 4, 2)
    q.init_from(w)
    assert torch.allclose(q.alpha, torch.quantile(w.abs(), 0.99, dim=1))


def test_power_weight_forward_equals_dequantized_codes():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 9, generator=g, dtype=F64)
    q = PowerWeight("post", 4, 4)
    q.init_from(w)
    assert torch.allclose(q(w), q.dequantize(q.codes(w)))


def test_lsq_weight_codes_are_signed_and_in_range():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 50, generator=g, dtype=F64) * 3
    q = LsqWeight(3, 8)
    q.init_from(w)
    c = q.codes(w * 4)  # beyond the clip points on both sides
    assert c.min() == -4 and c.max() == 3
    assert torch.allclose(q(w * 4), q.dequantize(c))


def test_lsq_init_step_is_two_mean_abs_over_sqrt_qp():
    w = torch.tensor([[1.0, -3.0], [2.0, 2.0]], dtype=F64)
    q = LsqWeight(4, 2)
    q.init_from(w)
    assert torch.allclose(q.alpha, torch.tensor([4.0, 4.0], dtype=F64) / math.sqrt(7))


def test_lsq_rounds_half_to_even():
    q = LsqWeight(4, 1)
    with torch.no_grad():
        q.alpha.fill_(1.0)
    assert q.codes(torch.tensor([[0.5, 1.5, 2.5, -0.5]], dtype=F64)).tolist() == [[0, 2, 2, 0]]


# --- gradients ----------------------------------------------------------------
def test_lsq_weight_gradients_follow_lsq():
    q = LsqWeight(2, 1)  # Qn = -2, Qp = 1
    with torch.no_grad():
        q.alpha.fill_(0.5)
    w = torch.tensor([[0.2, 0.3, 2.0, -5.0]], dtype=F64, requires_grad=True)
    q(w).sum().backward()
    # w/alpha = 0.4, 0.6, 4 (clip Qp), -10 (clip Qn); d/dalpha = round(v)-v inside, Qp/Qn outside
    expected = ((0 - 0.4) + (1 - 0.6) + 1 + -2) / math.sqrt(4 * 1)
    assert q.alpha.grad.tolist() == pytest.approx([expected])
    assert w.grad.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_power_weight_gradients_are_straight_through():
    q = PowerWeight("pot", 3, 1)
    with torch.no_grad():
        q.alpha.fill_(1.0)
    w = torch.tensor([[0.3, -0.6, 2.0, -3.0]], dtype=F64, requires_grad=True)
    q(w).sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    # inside: level - w/alpha (0.25 - 0.3, -0.5 + 0.6); outside: sign(w)
    assert q.alpha.grad.tolist() == pytest.approx([(0.25 - 0.3) + (-0.5 + 0.6) + 1 - 1])


def test_asq_forward_uses_s_times_beta_for_codes_and_dequantisation():
    a = AsqActivation(2)
    with torch.no_grad():
        a.s.fill_(0.1)
    x = torch.tensor([0.1, 0.26, 1.0, -0.2], dtype=F64)
    assert a.codes(x, 2.0).tolist() == [0, 1, 3, 0]  # s_a = 0.2
    assert torch.allclose(a(x, 2.0), torch.tensor([0.0, 0.2, 0.6, 0.0], dtype=F64))


def test_asq_gradients_match_eq_7_to_9_on_a_hand_example():
    s = torch.tensor(0.1, dtype=F64, requires_grad=True)
    beta = torch.tensor(1.0, dtype=F64, requires_grad=True)
    x = torch.tensor([0.1, 0.26, 1.0, -0.2], dtype=F64, requires_grad=True)
    y = asq_fake_quant(x, s, beta, 0, 3, 1.0 / math.sqrt(4 * 3))
    y.sum().backward()
    # x/s_a = 1, 2.6, 10 (> Qp), -2 (< Qn): factors 0, 0.4, Qp = 3, Qn = 0
    g_sa = 0 + 0.4 + 3 + 0
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert float(s.grad) == pytest.approx(g_sa * 1.0 / math.sqrt(12))
    assert float(beta.grad) == pytest.approx(g_sa * 0.1)


def test_asq_beta_gradient_is_per_sample_and_unscaled():
    s = torch.tensor(0.5, dtype=F64, requires_grad=True)
    beta = torch.tensor([[1.0], [2.0]], dtype=F64, requires_grad=True)
    x = torch.tensor([[0.2, 0.8], [0.2, 5.0]], dtype=F64, requires_grad=True)
    asq_fake_quant(x, s, beta, 0, 3, 0.25).sum().backward()
    # sample 0: v = 0.4, 1.6 -> (0-0.4) + (2-1.6) = 0; sample 1: v = 0.2, 5 -> (0-0.2) + 3 = 2.8
    assert beta.grad.shape == (2, 1)
    assert beta.grad.flatten().tolist() == pytest.approx([0.0, 2.8 * 0.5])
    assert float(s.grad) == pytest.approx((0.0 * 1.0 + 2.8 * 2.0) * 0.25)


def test_asq_signed_range_is_twos_complement():
    a = AsqActivation(3, signed=True)
    with torch.no_grad():
        a.s.fill_(1.0)
    assert a.codes(torch.tensor([-9.0, -4.0, 3.4, 9.0], dtype=F64), 1.0).tolist() == [-4, -4, 3, 3]


def test_asq_init_step_is_lsq_init():
    a = AsqActivation(4)
    a.init_from(torch.tensor([1.0, 3.0], dtype=F64))
    assert float(a.s.detach()) == pytest.approx(2 * 2.0 / math.sqrt(15))


def test_post_weight_alpha_gradient_is_level_minus_ratio_inside_and_sign_outside():
    q = PowerWeight("post", 3, 1)  # E_max = 2: levels 0, 1/2, 1/sqrt(2), 1
    with torch.no_grad():
        q.alpha.fill_(2.0)
    w = torch.tensor([[1.3, -0.9, 5.0, -4.0]], dtype=F64, requires_grad=True)
    g = torch.tensor([[1.0, 2.0, 3.0, 0.5]], dtype=F64)
    (q(w) * g).sum().backward()
    # w/alpha = 0.65 (-> 1/sqrt(2)), -0.45 (-> -1/2), 2.5 (clipped, +1), -2 (clipped, -1)
    expected = 1.0 * (2 ** -0.5 - 0.65) + 2.0 * (-0.5 + 0.45) + 3.0 * 1 + 0.5 * -1
    assert q.alpha.grad.tolist() == pytest.approx([expected])
    assert w.grad.tolist() == [[1.0, 2.0, 0.0, 0.0]]


# --- exactly nearest level at every midpoint ----------------------------------
def _exact_nearest_index(x: float, fmt: str, e_max: int) -> int:
    """Index into power_levels of the level nearest to x, decided with exact arithmetic."""
    from fractions import Fraction

    def level(i):                                 # (p, q): p + q*sqrt(2), index 0 is zero
        if i == 0:
            return Fraction(0), Fraction(0)
        w = e_max + 1 - i
        if fmt == "pot" or w % 2 == 0:
            return Fraction(1, 2 ** (w if fmt == "pot" else w // 2)), Fraction(0)
        return Fraction(0), Fraction(1, 2 ** (w // 2 + 1))

    def above_mid(i):                             # x > (level(i) + level(i+1)) / 2 ?
        (p0, q0), (p1, q1) = level(i), level(i + 1)
        d, q = Fraction(x) - (p0 + p1) / 2, (q0 + q1) / 2
        return d > 0 and (q == 0 or d * d > 2 * q * q)

    i = 0
    while i <= e_max and above_mid(i):
        i += 1
    return i


def _near_midpoints(fmt, e_max, np_dtype):
    import numpy as np

    lv = [0.0] + [math.sqrt(2) ** -w if fmt == "post" else 2.0 ** -w for w in range(e_max, -1, -1)]
    out = []
    for a, b in zip(lv[:-1], lv[1:]):
        c = np_dtype((a + b) / 2)
        for _ in range(3):
            c = np.nextafter(c, np_dtype(0))
        for _ in range(7):                        # mid - 3 ulp .. mid + 3 ulp
            out.append(float(c))
            c = np.nextafter(c, np_dtype(2))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmt,e_max,m_bits", [("post", 6, 3), ("post", 7, 4), ("post", 126, 7),
                                              ("pot", 6, 3), ("pot", 127, 8)])
def test_codes_choose_the_exactly_nearest_level_within_3_ulp_of_every_midpoint(dtype, fmt, e_max, m_bits):
    import numpy as np

    xs = _near_midpoints(fmt, e_max, np.float32 if dtype == torch.float32 else np.float64)
    want = [_exact_nearest_index(x, fmt, e_max) for x in xs]
    codes = power_codes(torch.tensor(xs, dtype=dtype), fmt, e_max, m_bits)
    got = [0 if c == 0 else e_max + 2 - c for c in codes.tolist()]
    bad = [(x.hex(), w, g) for x, w, g in zip(xs, want, got) if w != g]
    assert not bad, bad[:5]


def test_the_float32_value_0x3f5a827a_goes_to_one():
    import struct

    x = struct.unpack("<f", bytes.fromhex("7a825a3f"))[0]       # just above (1 + sqrt(0.5)) / 2
    assert power_codes(torch.tensor([x], dtype=torch.float32), "post", 6, 3).tolist() == [1]


@pytest.mark.parametrize("fmt,e_max", [("post", 6), ("post", 7), ("pot", 6)])
def test_forward_and_codes_agree_near_every_midpoint(fmt, e_max):
    import numpy as np

    q = PowerWeight(fmt, 4, 1, e_max)
    with torch.no_grad():
        q.alpha.fill_(0.37)                       # w / alpha rounds differently in float32 and float64
    xs = [v * 0.37 for v in _near_midpoints(fmt, e_max, np.float64)]
    for w in (torch.tensor(xs, dtype=torch.float32), torch.tensor(xs, dtype=F64)):
        w = torch.cat([w, -w]).reshape(1, -1)
        lv = power_decode(q.codes(w), fmt, e_max, q.m_bits)
        fq = q(w).detach().to(F64) / 0.37
        assert torch.allclose(fq, lv, rtol=1e-6, atol=0), (fq - lv).abs().max()
