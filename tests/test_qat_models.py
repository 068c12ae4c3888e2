"""golden.qat layers, graph and reference networks: BN folding, topology, stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asqhw.golden.qat.layers import QConv, QLinear
from asqhw.golden.qat.models import build_model
from asqhw.golden.qat.scheme import Scheme
from asqhw.core.errors import UserError


def _layer_params(net) -> int:
    return sum(p.numel() for u in net.units.values() if isinstance(u, (QConv, QLinear)) for p in u.parameters())


def test_folding_batchnorm_keeps_the_eval_function():
    torch.manual_seed(0)
    conv = QConv(3, 5, 3, 1, 1)
    with torch.no_grad():
        conv.bn.running_mean.uniform_(-1, 1)
        conv.bn.running_var.uniform_(0.5, 2)
        conv.bn.weight.uniform_(0.5, 1.5)
        conv.bn.bias.uniform_(-1, 1)
    conv.eval()
    x = torch.randn(2, 3, 6, 6)
    before = conv(x)
    conv.fold()
    assert conv.bn is None and conv.bias is not None
    assert torch.allclose(conv(x), before, atol=1e-5)


def test_qat_network_has_no_batchnorm_and_quantised_weights():
    net = build_model("digits_cnn", Scheme("asq+post", 3))
    net.to_qat()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net.units["conv2"].wq.fmt == "post" and net.units["conv2"].wq.e_max == 2
    assert net.units["conv1"].wq.bits == 8 and net.units["fc"].wq.bits == 8  # first and last: 8-bit


def test_eq17_e_max_choice_reaches_the_weight_quantisers():
    net = build_model("digits_cnn", Scheme("lsq+pot", 4, e_max="eq17"))
    net.to_qat()
    assert net.units["conv3"].wq.e_max == 7 and net.units["conv3"].wq.m_bits == 4


def test_first_layer_reads_signed_eight_bit_codes_and_last_fc_reads_eight_bit_codes():
    net = build_model("resnet20", Scheme("asq", 2))
    assert net.nodes[0].op == "input" and net.units["input_q"].act.qn == -128
    assert net.units["qfc"].bits == 8 and net.units["s2b1_qa"].bits == 2


def test_resnet20_uses_projection_shortcuts_only_where_the_shape_changes():
    net = build_model("resnet20", Scheme("lsq", 4))
    proj = [nd for nd in net.nodes if nd.name.endswith("_proj")]
    assert [nd.name for nd in proj] == ["s2b1_proj", "s3b1_proj"]
    # projection reads the block's quantised codes; identity adds read the block input itself
    assert net.node("s2b1_proj").inputs == ("s2b1_qa",)
    assert net.node("s1b2_add").inputs == ("s1b2_conv2", "s1b1_add")
    assert _layer_params(net) == 272474  # 0.27 M with the two projections


def test_resnet18_has_the_imagenet_shapes_and_11_69_m_parameters():
    net = build_model("resnet18", Scheme("lsq", 4))
    assert _layer_params(net) == 11689512
    assert sum(isinstance(u, QConv) for u in net.units.values()) == 20
    out = net(torch.zeros(1, 3, 224, 224), keep=True)
    assert out["gap"].shape == (1, 512, 1, 1) and out["fc"].shape == (1, 1000)


def test_digits_cnn_maps_an_8x8_image_to_ten_logits_in_both_stages():
    net = build_model("digits_cnn", Scheme("asq", 4))
    x = torch.randn(5, 1, 8, 8)
    net.eval()
    assert net(x).shape == (5, 10)
    net.to_qat()
    net.init_quantisers(x)
    assert net(x).shape == (5, 10)


def test_unknown_scheme_or_model_is_a_user_error():
    with pytest.raises(UserError, match="scheme"):
        Scheme("asq+lut", 4)
    with pytest.raises(UserError, match="bits"):
        Scheme("asq", 9)
    with pytest.raises(UserError, match="model"):
        build_model("vgg", Scheme("asq", 4))
