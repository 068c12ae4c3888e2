"""One layer-shape type, in the ground: sizes derived from the fields, bad fields refused by name."""

from __future__ import annotations

import pytest

from asqhw.core.errors import UserError
from asqhw.core.layershape import LayerShape
from asqhw.core.topologies import topology
from asqhw.hdl.engine import program


def test_a_conv_has_its_output_size_fan_in_and_work():
    s = LayerShape("conv2d", 16, 32, h=8, w=8, kh=3, kw=3, stride=2, pad=1, groups=2, n=4)
    assert (s.h_out, s.w_out, s.fan_in) == (4, 4, 72)
    assert s.params == 32 * 72
    assert s.macs == 4 * 32 * 72 * 16
    assert s.out_words == 4 * 32 * 16
    assert s.describe() == "3x3/2 16->32 8x8 g2"


def test_a_linear_layer_is_a_1x1_convolution_over_the_batch_for_the_engine():
    s = LayerShape("linear", 72, 10, n=5)
    assert (s.fan_in, s.macs, s.out_words) == (72, 5 * 720, 50)
    assert s.engine_geometry["w_out"] == 5 and s.act_words == 72 * 5


def test_topologies_and_the_engine_use_the_same_type():
    assert all(type(layer) is LayerShape for layer in topology("resnet20"))
    assert program.LayerShape is LayerShape


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="attention", c_in=1, c_out=1), "layer kind must be one of conv2d, linear, not 'attention'"),
    (dict(kind="conv2d", c_in=0, c_out=1), "c_in must be a positive integer, not 0"),
    (dict(kind="conv2d", c_in=4, c_out=4, kh=2.0), "kh must be an integer, not 2.0"),
    (dict(kind="conv2d", c_in=4, c_out=4, pad=-1), "pad must be at least 0, not -1"),
    (dict(kind="conv2d", c_in=4, c_out=6, groups=4), "channels 4/6 not divisible by groups 4"),
    (dict(kind="conv2d", c_in=4, c_out=4, h=2, w=2, kh=3, kw=3), "layer has an empty output"),
])
def test_bad_fields_are_refused_by_name(kwargs, message):
    with pytest.raises(UserError, match=message):
        LayerShape(**kwargs)
