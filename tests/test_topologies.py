"""Built-in topologies have the published sizes."""

import pytest

from asqhw.core.errors import UserError
from asqhw.core.topologies import topology


@pytest.mark.parametrize("name, macs_m, params_m, convs", [
    ("resnet18", 1814, 11.68, 20), ("resnet34", 3664, 21.78, 36), ("resnet20", 40.8, 0.271, 21),
    ("mobilenetv2", 300.8, 3.47, 52)])
def test_topology_matches_the_published_macs_and_weights(name, macs_m, params_m, convs):
    layers = topology(name)
    assert sum(l.macs for l in layers) / 1e6 == pytest.approx(macs_m, rel=2e-3)
    assert sum(l.params for l in layers) / 1e6 == pytest.approx(params_m, rel=2e-3)
    assert sum(l.kind == "conv2d" for l in layers) == convs


def test_only_the_first_conv_reads_the_image():
    layers = topology("resnet18")
    assert [l.name for l in layers if not l.quant_input] == ["conv1"]


def test_unknown_topology_is_a_user_error():
    with pytest.raises(UserError, match="unknown topology 'vgg'"):
        topology("vgg")
