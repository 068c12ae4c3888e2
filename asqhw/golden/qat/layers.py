"""Convolution and linear units: float with BatchNorm, then weight-quantised with the BatchNorm folded.

A :class:`QConv` starts as ``Conv2d(bias=False) -> BatchNorm2d`` (float training). QAT sees the
BatchNorm folded as the hardware will (docs/datapath.md section 11: weights ``w * k`` with
``k = gamma / sqrt(var + eps)``, bias ``beta_bn - mean * k``) in one of two ways:

- :meth:`QConv.fold` folds the running statistics into the weights and a bias at once (the
  BatchNorm is gone; what the exporter reads);
- *simulated folding* (Jacob et al. 2018, Krishnamoorthi 2018), when :meth:`QConv.quantise` is
  called with the BatchNorm still there: the quantiser sees ``w * k`` of the running statistics;
  in training, until :meth:`QConv.freeze_bn`, the output ``conv(x, Q(w k)) / k`` goes through the
  BatchNorm with batch statistics (which also updates the running ones); frozen, or in eval
  mode, the output is ``conv(x, Q(w k)) + beta_bn - mean * k``, the folded layer exactly, so a
  later :meth:`QConv.fold` changes no output.

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
        self.wq.init_from(self.folded_weight().detach().double())

    def folded_weight(self) -> torch.Tensor:
        """The weights the hardware multiplies by (BatchNorm folded in, if there is one)."""
        return self.weight

    #: a weight step never falls below max|w_c| / (STEP_FLOOR * top code): below it nearly every
    #: weight of the channel clips, and the bias over so small a step leaves B's 48 bits
    STEP_FLOOR = 16

    @torch.no_grad()
    def floor_step(self) -> None:
        """Keep every channel's weight step at or above ``max|w_c| / (16 * top)`` (``top``: ``Q_p``, or 1 for POT/POST)."""
        if self.wq is None:
            return
        top = getattr(self.wq, "qp", 1)
        w = self.folded_weight().detach().abs().reshape(len(self.wq.alpha), -1).amax(1)
        floor = (w / (self.STEP_FLOOR * top)).to(self.wq.alpha.dtype)
        self.wq.alpha.copy_(torch.maximum(self.wq.alpha, floor))

    def qweight(self, dtype) -> torch.Tensor:
        """The (fake-quantised, once quantised) folded weights in ``dtype``."""
        w = self.folded_weight()
        if self.wq is None:
            return w.to(dtype)
        return self.wq(w.double()).to(dtype)


class QConv(_Quantised):
    """``conv2d`` (square kernel, groups 1) with BatchNorm until folded."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride, self.padding = cin, cout, kernel, stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(cout)
        self.bias = None
        self.bn_frozen = False

    def _k(self) -> torch.Tensor:
        """``gamma / sqrt(running_var + eps)`` per output channel."""
        return self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)

    def folded_weight(self) -> torch.Tensor:
        """``w * k`` while the BatchNorm is simulated (quantised, not yet folded), else ``w``."""
        if self.bn is None or self.wq is None:
            return self.weight
        return self.weight * self._k().reshape(-1, 1, 1, 1)

    def freeze_bn(self) -> None:
        """Stop using batch statistics: the layer is the folded layer from now on, also in training."""
        self.bn_frozen = True

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the BatchNorm into the weights and a new bias (running statistics)."""
        if self.bn is None:
            return
        bn, k = self.bn, self._k()
        self.weight.mul_(k.reshape(-1, 1, 1, 1))
        self.bias = nn.Parameter((bn.bias - bn.running_mean * k).clone())
        self.bn = None

    def _conv(self, x: torch.Tensor, bias) -> torch.Tensor:
        return tfn.conv2d(x, self.qweight(x.dtype), bias, stride=self.stride, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return self._conv(x, None if self.bias is None else self.bias.to(x.dtype))
        if self.wq is None:                           # float training
            return self.bn(self._conv(x, None))
        k = self._k().to(x.dtype)
        if self.bn_frozen or not self.training:       # the folded layer
            return self._conv(x, (self.bn.bias - self.bn.running_mean * self._k()).to(x.dtype))
        return self.bn(self._conv(x, None) / k.reshape(1, -1, 1, 1))   # batch statistics


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
