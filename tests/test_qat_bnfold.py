"""Simulated BatchNorm folding in QAT: batch statistics, frozen statistics, and the final fold."""

from __future__ import annotations

import pytest
import torch

from asqhw.golden.qat.layers import QConv
from asqhw.golden.qat.models import build_model
from asqhw.golden.qat.scheme import Scheme


def _conv(seed=0) -> QConv:
    torch.manual_seed(seed)
    conv = QConv(3, 5, 3, 1, 1)
    with torch.no_grad():
        conv.bn.running_mean.uniform_(-1, 1)
        conv.bn.running_var.uniform_(0.5, 2)
        conv.bn.weight.uniform_(0.5, 1.5)
        conv.bn.bias.uniform_(-1, 1)
    conv.quantise("post", 4, 6)            # BatchNorm kept: simulated folding
    return conv


def test_the_weight_quantiser_sees_the_weights_folded_with_the_running_statistics():
    conv = _conv()
    k = conv.bn.weight / torch.sqrt(conv.bn.running_var + conv.bn.eps)
    assert torch.allclose(conv.folded_weight(), conv.weight * k.reshape(-1, 1, 1, 1))
    # POST scales start at the 99th percentile of |w k| per channel, not of |w|
    q99 = torch.quantile((conv.weight * k.reshape(-1, 1, 1, 1)).abs().reshape(5, -1).double(), 0.99, dim=1)
    assert torch.allclose(conv.wq.alpha, q99)


def test_eval_output_is_the_folded_layer_and_the_fold_changes_nothing():
    conv = _conv().eval()
    x = torch.randn(4, 3, 6, 6)
    before = conv(x)
    conv.fold()
    assert conv.bn is None
    assert torch.allclose(conv(x), before, atol=1e-5)


def test_training_uses_batch_statistics_and_updates_the_running_ones_until_frozen():
    conv = _conv().train()
    x = 3 * torch.randn(64, 3, 6, 6) + 1
    mean0 = conv.bn.running_mean.clone()
    y = conv(x)
    # batch statistics: every channel of the output has the BatchNorm's beta as its batch mean
    assert torch.allclose(y.mean(dim=(0, 2, 3)), conv.bn.bias, atol=1e-4)
    assert not torch.equal(conv.bn.running_mean, mean0)
    conv.freeze_bn()
    mean1 = conv.bn.running_mean.clone()
    frozen = conv(x)
    assert torch.equal(conv.bn.running_mean, mean1)           # no more updates
    assert torch.allclose(frozen, conv.eval()(x), atol=1e-6)  # frozen training = the folded layer


def test_gradients_reach_the_batchnorm_parameters_through_the_folded_weights():
    conv = _conv().train()
    conv(torch.randn(8, 3, 6, 6)).square().sum().backward()
    assert conv.bn.weight.grad is not None and conv.bn.weight.grad.abs().sum() > 0
    assert conv.weight.grad.abs().sum() > 0


def test_a_network_kept_with_batchnorm_folds_to_the_network_a_checkpoint_loads():
    net = build_model("resnet20", Scheme("asq+post", 3))
    net.to_qat(keep_bn=True)
    assert net.has_bn
    net.init_quantisers(torch.randn(8, 3, 32, 32))
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    before = net(x)
    net.fold_bn()
    assert not net.has_bn
    again = build_model("resnet20", Scheme("asq+post", 3))
    again.to_qat()
    again.load_state_dict(net.state_dict())       # the same parameters and buffers as a folded QAT net
    again.eval()
    assert torch.allclose(again(x), before, atol=1e-4)


def test_a_weight_step_is_kept_above_a_sixteenth_of_the_largest_weight_over_the_top_code():
    conv = QConv(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 0.1, 0.2, -0.3]).reshape(2, 3, 1, 1))
    conv.fold()
    conv.quantise("uniform", 4)                   # Q_p = 7
    with torch.no_grad():
        conv.wq.alpha.copy_(torch.tensor([1e-8, 1.0], dtype=torch.float64))
    conv.floor_step()
    assert conv.wq.alpha.tolist() == pytest.approx([2.0 / (16 * 7), 1.0], rel=1e-4)  # k = 1/sqrt(1 + eps)
    conv.quantise("post", 4, 6)                   # levels up to alpha: top code 1
    with torch.no_grad():
        conv.wq.alpha.fill_(1e-8)
    conv.floor_step()
    assert conv.wq.alpha.tolist() == pytest.approx([2.0 / 16, 0.3 / 16], rel=1e-4)
