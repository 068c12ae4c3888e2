"""Built-in layer lists of reference networks (shapes only, no weights, nothing downloaded).

Each topology is a list of :class:`~asqhw.core.layershape.LayerShape` (batch 1) in execution
order: every conv2d and linear layer with its name and input size, as a hardware model needs
them (cycle counts, adapter overhead). Pooling and residual additions are not layers here;
``quant_input`` marks the layers whose input is an activation quantiser (all but the first
conv, whose input is the image).
"""

from __future__ import annotations

from .errors import UserError
from .layershape import LayerShape

__all__ = ["TOPOLOGIES", "topology", "resnet18", "resnet34", "resnet20", "mobilenetv2"]


def _conv(name, c_in, c_out, size, k, stride=1, groups=1, quant=True) -> LayerShape:
    return LayerShape("conv2d", c_in, c_out, size, size, k, k, stride, k // 2, groups, name=name, quant_input=quant)


def _fc(name, c_in, c_out) -> LayerShape:
    return LayerShape("linear", c_in, c_out, name=name)


def _resnet_basic(blocks: list[int], widths: list[int], stem: list[LayerShape], size: int,
                  classes: int) -> list[LayerShape]:
    layers = list(stem)
    c_in = stem[-1].c_out
    for stage, (n, c) in enumerate(zip(blocks, widths)):
        for b in range(n):
            stride = 2 if b == 0 and stage > 0 else 1
            p = f"layer{stage + 1}.{b}"
            layers.append(_conv(f"{p}.conv1", c_in, c, size, 3, stride))
            out = (size + 2 - 3) // stride + 1
            layers.append(_conv(f"{p}.conv2", c, c, out, 3))
            if stride != 1 or c_in != c:
                layers.append(_conv(f"{p}.shortcut", c_in, c, size, 1, stride))
            c_in, size = c, out
    layers.append(_fc("fc", c_in, classes))
    return layers


def resnet18() -> list[LayerShape]:
    """ImageNet ResNet-18 (224x224 input, 7x7 stem, 3x3 max pool, projection shortcuts)."""
    stem = [_conv("conv1", 3, 64, 224, 7, 2, quant=False)]
    return _resnet_basic([2, 2, 2, 2], [64, 128, 256, 512], stem, 56, 1000)


def resnet34() -> list[LayerShape]:
    """ImageNet ResNet-34."""
    stem = [_conv("conv1", 3, 64, 224, 7, 2, quant=False)]
    return _resnet_basic([3, 4, 6, 3], [64, 128, 256, 512], stem, 56, 1000)


def resnet20() -> list[LayerShape]:
    """CIFAR ResNet-20 (32x32 input, widths 16/32/64, 1x1 projection shortcut when the shape changes)."""
    stem = [_conv("conv1", 3, 16, 32, 3, quant=False)]
    return _resnet_basic([3, 3, 3], [16, 32, 64], stem, 32, 10)


def mobilenetv2() -> list[LayerShape]:
    """ImageNet MobileNet-V2 (width 1.0): inverted residual blocks (expand 1x1, depthwise 3x3, project 1x1)."""
    layers = [_conv("conv1", 3, 32, 224, 3, 2, quant=False)]
    size, c_in = 112, 32
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for i, (t, c, n, s) in enumerate(cfg):
        for b in range(n):
            stride = s if b == 0 else 1
            p = f"block{i + 1}.{b}"
            hidden = c_in * t
            if t != 1:
                layers.append(_conv(f"{p}.expand", c_in, hidden, size, 1))
            layers.append(_conv(f"{p}.dw", hidden, hidden, size, 3, stride, groups=hidden))
            size = (size + 2 - 3) // stride + 1
            layers.append(_conv(f"{p}.project", hidden, c, size, 1))
            c_in = c
    layers.append(_conv("conv_last", c_in, 1280, size, 1))
    layers.append(_fc("fc", 1280, 1000))
    return layers


TOPOLOGIES = {"resnet18": resnet18, "resnet34": resnet34, "resnet20": resnet20, "mobilenetv2": mobilenetv2}


def topology(name: str) -> list[LayerShape]:
    """The layer list of a built-in topology by name."""
    if name not in TOPOLOGIES:
        raise UserError(f"unknown topology {name!r}; built in: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name]()
