"""Convolution and linear units: float with BatchNorm, then folded and weight-quantised.

A :class:`QConv` starts as ``Conv2d(bias=False) -> BatchNorm2d`` (float training). Its
:meth:`QConv.fold` folds the BatchNorm into the weights and a bias (docs/datapath.md section
11: ``w * gamma / sqrt(var + eps)``, ``beta_bn - gamma * mean / sqrt(var + eps)``), and
:meth:`QConv.quantise` adds a weight quantiser (:class:`golden.quant.LsqWeight` or
:class:`golden.quant.PowerWeight`, per output channel). :class:`QLinear` has no BatchNorm.
The weight quantisers run in float64; the layer runs in the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as tfn
from torch import nn

from ..quant import LsqWeight, PowerWeight

__all__ = ["QConv", "QLinear", "weight_quantiser"]


def weight_quantiser(fmt: str, bits: int, channels: int, e_max: int | None):
    """A per-output-channel weight quantiser of format ``uniform``, ``pot`` or ``post``."""
    if fmt == "uniform":
        return LsqWeight(bits, channels)
    return PowerWeight(fmt, bits, channels, e_max)


class _Quantised(nn.Module):
    """Shared weight-quantisation logic of the two units."""

    def __init__(self):
        super().__init__()
        self.wq = None

    def quantise(self, fmt: str, bits: int, e_max: int | None = None) -> None:
        """Attach a weight quantiser initialised from the current (folded) weights."""
        self.fmt, self.w_bits, self.e_max = fmt, bits, e_max
        self.wq = weight_quantiser(fmt, bits, self.weight.shape[0], e_max)
        self.wq.init_from(self.weight.detach().double())

    def qweight(self, dtype) -> torch.Tensor:
        """The (fake-quantised, once quantised) weights in ``dtype``."""
        if self.wq is None:
            return self.weight.to(dtype)
        return self.wq(self.weight.double()).to(dtype)


class QConv(_Quantised):
    """``conv2d`` (square kernel, groups 1) with BatchNorm until folded."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride, self.padding = cin, cout, kernel, stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(cout)
        self.bias = None

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the BatchNorm into the weights and a new bias (eval statistics)."""
        if self.bn is None:
            return
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.weight.mul_(k.reshape(-1, 1, 1, 1))
        self.bias = nn.Parameter((bn.bias - bn.running_mean * k).clone())
        self.bn = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = tfn.conv2d(x, self.qweight(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                       stride=self.stride, padding=self.padding)
        return y if self.bn is None else self.bn(y)


class QLinear(_Quantised):
    """``linear`` with a bias; a 4-D input is flattened in C, H, W order."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        lin = nn.Linear(cin, cout)
        self.weight, self.bias = lin.weight, lin.bias

    def fold(self) -> None:
        """Nothing to fold (no BatchNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tfn.linear(x.flatten(1), self.qweight(x.dtype), self.bias.to(x.dtype))
