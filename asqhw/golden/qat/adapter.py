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

QAT start (:meth:`Adapter.init_quantisers`, from a batch of the adapter's input). The authors'
start (``beta`` near 1 for every image, small random last-layer weights) leaves ``beta`` almost
constant: Eq. 9's gradient moves it only through the rounding error, a weak and noisy signal,
and LSQ's step start ``2 mean|x| / sqrt(Q_p)`` gives the 8-bit pooled mean only a handful of
codes (digits: a standard deviation of about one code per channel across images). So:

- the pool and hidden steps start at ``max / 255`` over the batch (the whole code range in use),
  the adapter's 8-bit weight steps at ``max|w| / 127`` per output channel;
- with ``fit=True`` (the default) the last layer starts as the least-squares fit of
  ``beta_n = mean|x_n| / mean|x|``: each image's LSQ step start relative to the batch's, so
  that an image with larger activations starts with a larger step (and ``beta`` averages 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as tfn
from torch import nn

from ..quant import AsqActivation, LsqWeight, init_step, round_ste

__all__ = ["Adapter", "adapter_hidden", "ADAPTER_STARTS"]

EPS = 1e-8


def adapter_hidden(channels: int, reduction: int = 4) -> int:
    """Hidden width of the adapter of a ``channels``-channel tensor (0: single layer)."""
    return channels // reduction if channels >= 8 else 0


ADAPTER_STARTS = ("fit", "range", "lsq")


def _lsq_weight(q: LsqWeight, w: torch.Tensor) -> None:
    q.init_from(w.detach().double())


@torch.no_grad()
def _range_step(q: AsqActivation, x: torch.Tensor) -> None:
    """Step ``max(x) / Q_p`` (LSQ's start for an all-zero ``x``)."""
    top = float(x.max()) if x.numel() else 0.0
    if top > 0 and top == top:
        q.s.fill_(top / q.qp)
    else:
        init_step(q, x)


@torch.no_grad()
def _range_weight(q: LsqWeight, w: torch.Tensor) -> None:
    """Per-output-channel step ``max|w_c| / Q_p`` (LSQ's start for an all-zero channel)."""
    q.init_from(w.double())
    top = w.detach().abs().reshape(len(w), -1).amax(1).to(q.alpha.dtype) / q.qp
    q.alpha.copy_(torch.where(top > 0, top, q.alpha))


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
    def fit_beta(self, x: torch.Tensor, ridge: float = 1e-3) -> None:
        """Set the last layer to the least-squares fit of ``mean|x_n| / mean|x|`` over batch ``x``.

        The first layer's weights become their magnitudes and its biases zero, so that on the
        non-negative pooled means the hidden units are positive mixtures of them (a per-image
        scale passes the ReLU); the fit (ridge ``ridge`` times the mean diagonal on the weights,
        in float64) then sets the last layer.
        """
        if self.hidden:
            self.fc1.weight.abs_()
            self.fc1.bias.zero_()
        p = self.pool(x).double()
        h = torch.relu(tfn.linear(p, self.fc1.weight.double(), self.fc1.bias.double())) if self.hidden else p
        per_sample = x.abs().reshape(len(x), -1).mean(1).double()
        target = per_sample / per_sample.mean().clamp_min(1e-12)
        a = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1)
        gram = a.T @ a
        reg = torch.eye(len(gram), dtype=h.dtype) * ridge * float(torch.diagonal(gram).mean())
        reg[-1, -1] = 0.0
        sol = torch.linalg.solve(gram + reg, a.T @ target)
        if not bool(torch.isfinite(sol).all()):
            return
        self.fc2.weight.copy_(sol[:-1].reshape(1, -1).to(self.fc2.weight.dtype))
        self.fc2.bias.copy_(sol[-1:].to(self.fc2.bias.dtype))

    @torch.no_grad()
    def init_quantisers(self, x: torch.Tensor, start: str = "fit") -> None:
        """Start the adapter from a batch ``x`` of its input.

        ``start``: ``fit`` (range steps and the fitted last layer, see the module docstring),
        ``range`` (range steps only) or ``lsq`` (LSQ's starts for every step, the authors' last
        layer: the behaviour before the fit, kept for comparison).
        """
        if start not in ADAPTER_STARTS:
            raise ValueError(f"adapter start must be one of {ADAPTER_STARTS}, not {start!r}")
        if start == "fit":
            self.fit_beta(x)
        act, wgt = (_range_step, _range_weight) if start != "lsq" else (init_step, _lsq_weight)
        p = self.pool(x)
        act(self.pool_q, p)
        if self.hidden:
            wgt(self.w1_q, self.fc1.weight)
            act(self.hidden_q, torch.relu(self.fc1(p)))
        wgt(self.w2_q, self.fc2.weight)

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
