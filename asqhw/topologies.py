"""Built-in network topologies (layer shapes only, no weights, nothing downloaded).

Each topology is a list of :class:`Layer` in execution order: every convolution and
fully connected layer, projection shortcuts included. Pooling, additions and
activations are not engine layers and are not listed. Shapes follow the original
papers: ResNet-18/34 (He et al. 2016, ImageNet, 224x224), ResNet-20 (the CIFAR-10
variant, 32x32, with 1x1 projection shortcuts where the shape changes) and
MobileNet-V2 (Sandler et al. 2018, 224x224, width 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

__all__ = ["Layer", "TOPOLOGIES", "topology"]


@dataclass(frozen=True)
class Layer:
    """One conv2d (``k`` x ``k``) or linear layer; ``h``, ``w`` is its input size."""

    name: str
    kind: str
    c_in: int
    c_out: int
    h: int = 1
    w: int = 1
    k: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1


def _conv(name, c_in, c_out, size, k, stride=1, groups=1):
    return Layer(name, "conv2d", c_in, c_out, size, size, k, stride, k // 2, groups)


def _resnet_imagenet(blocks):
    layers = [_conv("conv1", 3, 64, 224, 7, 2)]
    size, c = 56, 64                      # after the 3x3/2 max pool
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for b in range(n):
            stride = 2 if stage > 1 and b == 0 else 1
            p = f"layer{stage}.{b}"
            layers.append(_conv(f"{p}.conv1", c, width, size, 3, stride))
            out = size // stride
            layers.append(_conv(f"{p}.conv2", width, width, out, 3))
            if stride != 1 or c != width:
                layers.append(_conv(f"{p}.downsample", c, width, size, 1, stride))
            c, size = width, out
    layers.append(Layer("fc", "linear", 512, 1000))
    return layers


def _resnet20():
    layers = [_conv("conv1", 3, 16, 32, 3)]
    size, c = 32, 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for b in range(3):
            stride = 2 if stage > 1 and b == 0 else 1
            p = f"layer{stage}.{b}"
            layers.append(_conv(f"{p}.conv1", c, width, size, 3, stride))
            out = size // stride
            layers.append(_conv(f"{p}.conv2", width, width, out, 3))
            if stride != 1 or c != width:
                layers.append(_conv(f"{p}.shortcut", c, width, size, 1, stride))
            c, size = width, out
    layers.append(Layer("fc", "linear", 64, 10))
    return layers


def _mobilenetv2():
    layers = [_conv("conv1", 3, 32, 224, 3, 2)]
    size, c = 112, 32
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    i = 0
    for t, width, n, s in settings:
        for b in range(n):
            stride = s if b == 0 else 1
            hidden = c * t
            p = f"block{i}"
            if t != 1:
                layers.append(_conv(f"{p}.expand", c, hidden, size, 1))
            layers.append(_conv(f"{p}.dw", hidden, hidden, size, 3, stride, groups=hidden))
            size //= stride
            layers.append(_conv(f"{p}.project", hidden, width, size, 1))
            c = width
            i += 1
    layers.append(_conv("conv_last", c, 1280, size, 1))
    layers.append(Layer("fc", "linear", 1280, 1000))
    return layers


TOPOLOGIES = {
    "resnet18": lambda: _resnet_imagenet((2, 2, 2, 2)),
    "resnet34": lambda: _resnet_imagenet((3, 4, 6, 3)),
    "resnet20": _resnet20,
    "mobilenetv2": _mobilenetv2,
}


def topology(name: str) -> list[Layer]:
    """The layers of a built-in topology; UserError for an unknown name."""
    if name not in TOPOLOGIES:
        raise UserError(f"unknown model {name!r}; built in: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name]()
