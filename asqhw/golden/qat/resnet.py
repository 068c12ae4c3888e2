"""ResNet-20 (CIFAR shapes) and ResNet-18 (ImageNet shapes) as QAT graphs.

Basic blocks: ``[quant] -> conv3x3 -> ReLU -> [quant] -> conv3x3``, plus the shortcut, then
``add -> ReLU``. The shortcut is the identity (the block's input, as wide codes) when the shape
is kept, and a **projection** (1x1 conv, stride 2, with BatchNorm folded) reading the block's
quantised input codes when it changes (He et al.'s option B). Both convs of the block's input
side (3x3 and 1x1) read the same codes, made by one quantiser. The first conv reads signed
8-bit codes and has 8-bit weights; the last FC reads 8-bit codes and has 8-bit weights.
"""

from __future__ import annotations

from .graph import GraphBuilder, QatNet
from .scheme import Scheme

__all__ = ["resnet20", "resnet18"]


def _block(g: GraphBuilder, name: str, x: str, cin: int, cout: int, stride: int) -> str:
    q = g.quant(f"{name}_qa", x, cin)
    a = g.conv(f"{name}_conv1", q, cin, cout, 3, stride, 1)
    a = g.quant(f"{name}_qb", a, cout)
    a = g.conv(f"{name}_conv2", a, cout, cout, 3, 1, 1, relu=False)
    if stride != 1 or cin != cout:
        sc = g.conv(f"{name}_proj", q, cin, cout, 1, stride, 0, relu=False)
    else:
        sc = x
    return g.add(f"{name}_add", a, sc, relu=True)


def _stages(g: GraphBuilder, x: str, cin: int, widths, blocks: int) -> str:
    """Stages of ``blocks`` basic blocks ``s{stage}b{block}``; the first block of each later stage has stride 2."""
    for s, cout in enumerate(widths):
        for b in range(blocks):
            x = _block(g, f"s{s + 1}b{b + 1}", x, cin, cout, 2 if (s > 0 and b == 0) else 1)
            cin = cout
    return x


def resnet20(scheme: Scheme, classes: int = 10) -> QatNet:
    """CIFAR ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels, 32x32 input."""
    g = GraphBuilder(scheme)
    x = g.input()
    x = g.conv("conv1", x, 3, 16, 3, 1, 1, edge=True)
    x = _stages(g, x, 16, (16, 32, 64), 3)
    x = g.avgpool("gap", x, 8)
    x = g.quant("qfc", x, 64, bits=8)
    g.linear("fc", x, 64, classes)
    return g.build("resnet20", (3, 32, 32), classes)


def resnet18(scheme: Scheme, classes: int = 1000) -> QatNet:
    """ResNet-18 with ImageNet shapes (224x224 input): 4 stages of 2 basic blocks."""
    g = GraphBuilder(scheme)
    x = g.input()
    x = g.conv("conv1", x, 3, 64, 7, 2, 3, edge=True)
    x = g.maxpool("pool", x, 3, 2, 1)
    x = _stages(g, x, 64, (64, 128, 256, 512), 2)
    x = g.avgpool("gap", x, 7)
    x = g.quant("qfc", x, 512, bits=8)
    g.linear("fc", x, 512, classes)
    return g.build("resnet18", (3, 224, 224), classes)
