"""The small CNN for scikit-learn's 8x8 digits.

``input (1x8x8, signed 8-bit codes) -> conv3x3(16) -> ReLU -> [quant] -> conv3x3(32) -> ReLU
-> maxpool 2 -> [quant] -> conv3x3(32) -> ReLU -> global avgpool -> [quant, 8-bit] -> fc(10)``.
The first conv and the last FC have 8-bit uniform weights; the quantisers between them use the
scheme's bits. About 14 k parameters; trains in well under a minute on 2 cores.
"""

from __future__ import annotations

from .graph import GraphBuilder, QatNet
from .scheme import Scheme

__all__ = ["digits_cnn"]


def digits_cnn(scheme: Scheme, width: int = 16) -> QatNet:
    """Build the digits CNN (float stage) for ``scheme``; ``width`` is the first conv's channels."""
    c1, c2 = width, 2 * width
    g = GraphBuilder(scheme)
    x = g.input()
    x = g.conv("conv1", x, 1, c1, 3, padding=1, edge=True)
    x = g.quant("q1", x, c1)
    x = g.conv("conv2", x, c1, c2, 3, padding=1)
    x = g.maxpool("pool", x, 2, 2)
    x = g.quant("q2", x, c2)
    x = g.conv("conv3", x, c2, c2, 3, padding=1)
    x = g.avgpool("gap", x, 4)
    x = g.quant("q3", x, c2, bits=8)
    g.linear("fc", x, c2, 10)
    return g.build("digits_cnn", (1, 8, 8), 10)
