"""The ASQ adapter (paper Eq. 4), fake-quantised as the integer adapter of spec section 13.

Float form, as the authors built it: global average pool over the spatial dims,
``Linear(C, C//r) -> ReLU -> Linear(C//r, 1) -> ReLU``, clamped to at least ``eps``; a single
``Linear(C, 1) -> ReLU`` when ``C < 8``. The last layer starts with weights ~ N(0, 0.01) and
bias 1, so ``beta`` starts near 1.

Quantised form (after :meth:`Adapter.quantise`), which the integer adapter computes up to the
rounding of its requantisations: the pooled mean is fake-quantised to 8-bit unsigned codes with
a learned LSQ step ``s_p``; the FC weights to 8-bit uniform codes (per-output-channel LSQ); the
hidden activation to 8-bit unsigned codes with a learned step ``s_h``; and ``beta`` to
``beta_q / 2^f_b`` with ``beta_q`` clamped to ``[1, 2^b_beta - 1]`` (the ReLU and the epsilon
clamp become the lower bound 1). Every rounding has a straight-through gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as tfn
from torch import nn

from ..quant import AsqActivation, LsqWeight, init_step, round_ste

__all__ = ["Adapter", "adapter_hidden"]

EPS = 1e-8


def adapter_hidden(channels: int, reduction: int = 4) -> int:
    """Hidden width of the adapter of a ``channels``-channel tensor (0: single layer)."""
    return channels // reduction if channels >= 8 else 0


class Adapter(nn.Module):
    """Per-sample ``beta`` from the tensor that is about to be quantised.

    Parameters
    ----------
    channels : int
        Channels ``C`` of the input tensor.
    reduction : int
        ``r``: the hidden layer has ``C // r`` units (when ``C >= 8``).
    beta_bits, beta_frac : int
        Fixed-point format of ``beta`` in the quantised form (``b_beta``, ``f_b``).
    """

    def __init__(self, channels: int, reduction: int = 4, beta_bits: int = 10, beta_frac: int = 8):
        super().__init__()
        self.channels = channels
        self.hidden = adapter_hidden(channels, reduction)
        self.beta_bits, self.beta_frac = beta_bits, beta_frac
        if self.hidden:
            self.fc1 = nn.Linear(channels, self.hidden)
        self.fc2 = nn.Linear(self.hidden or channels, 1)
        nn.init.normal_(self.fc2.weight, 0.0, 0.01)
        nn.init.constant_(self.fc2.bias, 1.0)
        self.quantised = False

    def quantise(self) -> None:
        """Add the 8-bit quantisers (steps still to be set by :meth:`init_quantisers`)."""
        if self.quantised:
            return
        self.pool_q = AsqActivation(8)                       # mean codes P, step s_p
        if self.hidden:
            self.w1_q = LsqWeight(8, self.hidden)
            self.hidden_q = AsqActivation(8)                 # hidden codes H, step s_h
        self.w2_q = LsqWeight(8, 1)
        self.quantised = True

    @torch.no_grad()
    def init_quantisers(self, x: torch.Tensor) -> None:
        """LSQ-initialise every step from a batch ``x`` of the adapter's input."""
        p = self.pool(x)
        init_step(self.pool_q, p)
        if self.hidden:
            self.w1_q.init_from(self.fc1.weight.double())
            init_step(self.hidden_q, torch.relu(self.fc1(p)))
        self.w2_q.init_from(self.fc2.weight.double())

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Global average pool to ``N x C``."""
        return x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x

    def _w(self, fc: nn.Linear, q) -> torch.Tensor:
        return q(fc.weight.double()).to(fc.weight.dtype) if self.quantised else fc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``beta`` per sample, shape ``N x 1``."""
        p = self.pool(x)
        if self.quantised:
            p = self.pool_q(p, 1.0)
        if self.hidden:
            p = torch.relu(tfn.linear(p, self._w(self.fc1, getattr(self, "w1_q", None)), self.fc1.bias))
            if self.quantised:
                p = self.hidden_q(p, 1.0)
        b = tfn.linear(p, self._w(self.fc2, getattr(self, "w2_q", None)), self.fc2.bias)
        if not self.quantised:
            return torch.clamp(torch.relu(b), min=EPS)
        one = float(1 << self.beta_frac)
        return torch.clamp(round_ste(b * one), 1.0, float((1 << self.beta_bits) - 1)) / one
