"""golden.qat.adapter and actquant: the ASQ adapter as the integer adapter of spec section 13."""

from __future__ import annotations

import math

import pytest
import torch

from asqhw.golden.qat.actquant import ActQuant, wide_shift
from asqhw.golden.qat.adapter import Adapter, adapter_hidden

F64 = torch.float64


def _quantised(channels=16, **kw) -> Adapter:
    torch.manual_seed(0)
    ad = Adapter(channels, **kw).double()
    ad.quantise()
    ad.init_quantisers(torch.rand(8, channels, 4, 4, dtype=F64))
    return ad


def test_hidden_width_is_c_over_r_and_zero_below_eight_channels():
    assert adapter_hidden(16) == 4 and adapter_hidden(64, 8) == 8
    assert adapter_hidden(7) == 0
    assert not hasattr(Adapter(4), "fc1") and Adapter(4).fc2.in_features == 4


def test_last_layer_starts_at_bias_one_with_small_weights_so_beta_is_near_one():
    torch.manual_seed(1)
    ad = Adapter(64)
    assert ad.fc2.bias.item() == 1.0
    assert 0.005 < ad.fc2.weight.std().item() < 0.015
    beta = ad(torch.rand(4, 64, 5, 5))
    assert beta.shape == (4, 1) and torch.all((beta - 1).abs() < 0.1)


def test_float_beta_is_clamped_to_epsilon():
    ad = Adapter(4)
    with torch.no_grad():
        ad.fc2.bias.fill_(-5.0)
    assert torch.all(ad(torch.rand(2, 4, 3, 3)) == 1e-8)


def test_quantised_beta_is_a_multiple_of_two_to_minus_f_b():
    ad = _quantised()
    beta = ad(torch.rand(6, 16, 4, 4, dtype=F64) * 3)
    q = beta * 256
    assert torch.equal(q, torch.round(q))


@pytest.mark.parametrize("bias, expected", [(100.0, 1023 / 256), (-3.0, 1 / 256)])
def test_quantised_beta_clamps_to_one_and_to_the_largest_b_beta_bit_code(bias, expected):
    ad = _quantised()
    with torch.no_grad():
        ad.fc2.bias.fill_(bias)
    assert torch.all(ad(torch.rand(3, 16, 4, 4, dtype=F64)) == expected)


def test_pooled_mean_is_quantised_to_eight_bit_codes_of_step_s_p():
    ad = _quantised(4)  # single layer: beta = fc2(P * s_p)
    with torch.no_grad():
        ad.pool_q.s.fill_(0.5)
        ad.fc2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        ad.w2_q.alpha.fill_(1 / 127)
        ad.fc2.bias.fill_(0.0)
    x = torch.zeros(3, 4, 2, 2, dtype=F64)
    x[:, 0] = torch.tensor([0.6, 1.4, 500.0], dtype=F64).reshape(3, 1, 1)  # means 0.6, 1.4, 500
    beta = ad(x).flatten()
    # P = round(mean / 0.5) clamped to 255: 1, 3 (2.8), 255; w2 code 127 * alpha = 1
    assert beta.tolist() == pytest.approx([0.5, 1.5, min(127.5, 1023 / 256)])


def test_beta_gradient_reaches_the_adapter_as_eq_9_with_lsqs_scale_straight_through():
    aq = ActQuant(2, 4, adapter=True).double()   # Qp = 3, single-layer adapter
    aq.enable(torch.rand(4, 4, 2, 2, dtype=F64))
    with torch.no_grad():
        aq.act.s.fill_(0.25)
        aq.adapter.fc2.weight.zero_()
        aq.adapter.fc2.bias.fill_(1.0)               # beta = 1 exactly, inside the clamp
    x = torch.tensor([0.1, 0.3, 0.6, 2.0] * 4, dtype=F64).reshape(1, 4, 2, 2)
    aq(x).sum().backward()
    # Eq. 7 factors on v = x / (s beta) = 0.4, 1.2, 2.4, 8 (> Qp): round(v) - v inside, Qp outside
    g_sa = 4 * ((0 - 0.4) + (1 - 1.2) + (2 - 2.4) + 3)
    # Eq. 9: dL/dbeta = s * g_sa, times LSQ's scale 1/sqrt(N * Qp) of one image's N = 16
    # elements; d beta / d bias = 1 through the straight-through rounding
    assert aq.adapter.fc2.bias.grad.item() == pytest.approx(0.25 * g_sa / math.sqrt(16 * 3))
    # Eq. 8 with LSQ's gradient scale 1/sqrt(numel * Qp)
    assert aq.act.s.grad.item() == pytest.approx(g_sa * 1.0 / math.sqrt(16 * 3))


def test_beta_gradient_is_zero_where_beta_is_clamped():
    aq = ActQuant(2, 4, adapter=True).double()
    aq.enable(torch.rand(4, 4, 2, 2, dtype=F64))
    with torch.no_grad():
        aq.adapter.fc2.bias.fill_(-1.0)
    aq(torch.rand(2, 4, 2, 2, dtype=F64)).sum().backward()
    assert aq.adapter.fc2.bias.grad.item() == 0.0


@pytest.mark.parametrize("bits, adapter, g", [(4, True, 9), (4, False, 11), (8, True, 5), (2, False, 13)])
def test_wide_shift_is_the_largest_g_with_qp_beta_max_two_to_g_in_sixteen_bits(bits, adapter, g):
    assert wide_shift(bits, adapter) == g
    qp, bmax = 2**bits - 1, (1023 / 256 if adapter else 1.0)
    assert qp * bmax * 2**g <= 32767 < qp * bmax * 2 ** (g + 1)


def test_wide_clip_saturates_where_the_wide_codes_do():
    aq = ActQuant(4, 4, adapter=False).double()
    aq.enable()
    with torch.no_grad():
        aq.act.s.fill_(0.5)
    limit = 32767 * 0.5 / 2**11
    x = torch.tensor([1.0, limit, 3 * limit], dtype=F64)
    assert aq.wide_clip(x).tolist() == [1.0, limit, limit]


def test_disabled_quantisers_are_the_identity():
    aq = ActQuant(3, 16, adapter=True)
    x = torch.randn(2, 16, 3, 3)
    assert torch.equal(aq(x), x) and torch.equal(aq.wide_clip(x * 1e6), x * 1e6)


def test_a_dead_tensor_still_gets_a_positive_step():
    aq = ActQuant(4, 16, adapter=True)
    aq.enable(torch.zeros(2, 16, 3, 3))
    assert aq.step == pytest.approx(1 / 15) and float(aq.adapter.pool_q.s.detach()) > 0


def _scaled_batch(channels=16, n=64, seed=1):
    """Images that are one pattern times a per-image scale 0.5..2: the LSQ start of each is ``scale``-proportional."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.rand(1, channels, 4, 4, generator=g, dtype=F64)
    scale = torch.linspace(0.5, 2.0, n, dtype=F64)
    return pattern * scale.reshape(-1, 1, 1, 1), scale / scale.mean()


@pytest.mark.parametrize("channels", [4, 16])
def test_fit_start_gives_each_image_beta_in_proportion_to_its_activation_scale(channels):
    x, target = _scaled_batch(channels)
    ad = Adapter(channels).double()
    ad.quantise()
    ad.init_quantisers(x, "fit")
    beta = ad(x).detach().flatten()
    # the quantised adapter follows mean|x_n| / mean|x| to within a few beta LSBs (1/256) and 2 %
    assert torch.allclose(beta, target, rtol=0.02, atol=4 / 256)
    assert float(beta.max() / beta.min()) > 3.5


def test_authors_start_keeps_beta_near_one_for_every_image():
    x, _ = _scaled_batch()
    torch.manual_seed(0)
    ad = Adapter(16).double()
    ad.quantise()
    ad.init_quantisers(x, "lsq")
    beta = ad(x).detach().flatten()
    assert float(beta.max() - beta.min()) < 0.1


def test_range_start_puts_the_largest_pooled_mean_and_hidden_value_at_code_255():
    x, _ = _scaled_batch()
    ad = Adapter(16).double()
    ad.quantise()
    ad.init_quantisers(x, "range")
    p = Adapter.pool(x)
    with torch.no_grad():
        assert float(ad.pool_q.s) == pytest.approx(float(p.max()) / 255)
        assert float(ad.hidden_q.s) == pytest.approx(float(torch.relu(ad.fc1(p)).max()) / 255)
        top = ad.fc1.weight.abs().amax(1) / 127
    assert torch.allclose(ad.w1_q.alpha, top)


def test_an_unknown_adapter_start_is_refused():
    ad = Adapter(16).double()
    ad.quantise()
    with pytest.raises(ValueError, match="adapter start"):
        ad.init_quantisers(torch.rand(4, 16, 2, 2, dtype=F64), "ones")
