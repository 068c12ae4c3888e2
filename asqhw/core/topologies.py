"""Built-in layer lists of reference networks (shapes only, no weights, nothing downloaded).

Each topology is a list of :class:`Layer` in execution order: every conv2d and linear layer
with its input size, as a hardware model needs them (cycle counts, adapter overhead). Pooling
and residual additions are not layers here; ``quant_input`` marks the layers whose input is
an activation quantiser (all but the first conv, whose input is the image).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layer", "TOPOLOGIES", "topology", "resnet18", "resnet34", "resnet20", "mobilenetv2"]


@dataclass(frozen=True)
class Layer:
    """One conv2d (``kind="conv2d"``) or linear layer and the size of its input."""

    name: str
    kind: str
    c_in: int
    c_out: int
    h_in: int = 1
    w_in: int = 1
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    quant_input: bool = True

    @property
    def h_out(self) -> int:
        return (self.h_in + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w_in + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def fan_in(self) -> int:
        return self.c_in // self.groups * self.kernel * self.kernel

    @property
    def params(self) -> int:
        """Weights (no bias)."""
        return self.c_out * self.fan_in

    @property
    def macs(self) -> int:
        """Multiply-adds of one sample."""
        return self.params * self.h_out * self.w_out


def _conv(name, c_in, c_out, size, k, stride=1, groups=1, quant=True) -> Layer:
    return Layer(name, "conv2d", c_in, c_out, size, size, k, stride, k // 2, groups, quant)


def _resnet_basic(blocks: list[int], widths: list[int], stem: list[Layer], size: int,
                  classes: int) -> list[Layer]:
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
                layers.append(Layer(f"{p}.shortcut", "conv2d", c_in, c, size, size, 1, stride, 0))
            c_in, size = c, out
    layers.append(Layer("fc", "linear", c_in, classes))
    return layers


def resnet18() -> list[Layer]:
    """ImageNet ResNet-18 (224x224 input, 7x7 stem, 3x3 max pool, projection shortcuts)."""
    stem = [_conv("conv1", 3, 64, 224, 7, 2, quant=False)]
    return _resnet_basic([2, 2, 2, 2], [64, 128, 256, 512], stem, 56, 1000)


def resnet34() -> list[Layer]:
    """ImageNet ResNet-34."""
    stem = [_conv("conv1", 3, 64, 224, 7, 2, quant=False)]
    return _resnet_basic([3, 4, 6, 3], [64, 128, 256, 512], stem, 56, 1000)


def resnet20() -> list[Layer]:
    """CIFAR ResNet-20 (32x32 input, widths 16/32/64, 1x1 projection shortcut when the shape changes)."""
    stem = [_conv("conv1", 3, 16, 32, 3, quant=False)]
    return _resnet_basic([3, 3, 3], [16, 32, 64], stem, 32, 10)


def mobilenetv2() -> list[Layer]:
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
    layers.append(Layer("fc", "linear", 1280, 1000))
    return layers


TOPOLOGIES = {"resnet18": resnet18, "resnet34": resnet34, "resnet20": resnet20, "mobilenetv2": mobilenetv2}


def topology(name: str) -> list[Layer]:
    """The layer list of a built-in topology by name."""
    from .errors import UserError

    if name not in TOPOLOGIES:
        raise UserError(f"unknown topology {name!r}; built in: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name]()
