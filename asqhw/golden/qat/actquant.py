"""Activation quantisers of a network: the signed 8-bit input and the ASQ / LSQ quantisers.

:class:`ActQuant` models a ``quant`` node (docs/datapath.md section 14), optionally with its
``adapter`` (section 13). In integers it reads unsigned wide codes ``z`` of step
``s_z = s * 2^-G``, which saturate at ``2^15 - 1``; QAT models that saturation with
:meth:`ActQuant.wide_clip` (applied to the tensor for every reader, also a residual branch).
Until :meth:`ActQuant.enable` both classes are the identity (float training).
"""

from __future__ import annotations


import torch
from torch import nn

import math

from ..quant import AsqActivation, grad_scale, init_step
from .adapter import Adapter

__all__ = ["ActQuant", "InputQuant", "wide_shift"]

WIDE_MAX = 2**15 - 1


def wide_shift(bits: int, adapter: bool, beta_bits: int = 10, beta_frac: int = 8) -> int:
    """``G``: the largest value in 0..30 with ``Q_p * beta_max * 2^G <= 2^15 - 1`` (section 14)."""
    qp = (1 << bits) - 1
    num, den = (qp * ((1 << beta_bits) - 1), 1 << beta_frac) if adapter else (qp, 1)
    g = 0
    while g < 30 and num * 2 ** (g + 1) <= WIDE_MAX * den:
        g += 1
    return g


class InputQuant(nn.Module):
    """Signed 8-bit input codes with a learned static LSQ step (no adapter)."""

    def __init__(self):
        super().__init__()
        self.act = AsqActivation(8, signed=True)
        self.enabled = False

    def enable(self, x: torch.Tensor | None = None) -> None:
        """Switch quantisation on; LSQ-initialise the step from ``x`` if given."""
        if x is not None:
            init_step(self.act, x)
        self.enabled = True

    @property
    def step(self) -> float:
        """The input step ``s`` (docs/network.md ``input.step``)."""
        return float(self.act.s.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x, 1.0) if self.enabled else x


class ActQuant(nn.Module):
    """Unsigned ``bits``-bit activation quantiser: ASQ with an adapter, or LSQ (``beta = 1``).

    Parameters
    ----------
    bits : int
        Code width ``b_a``.
    channels : int
        Channels of the quantised tensor (sizes the adapter).
    adapter : bool
        ASQ with an adapter (else LSQ).
    reduction, beta_bits, beta_frac : int
        Adapter parameters (see :class:`~golden.qat.adapter.Adapter`).
    """

    def __init__(self, bits: int, channels: int, adapter: bool, *, reduction: int = 4,
                 beta_bits: int = 10, beta_frac: int = 8):
        super().__init__()
        self.bits = bits
        self.act = AsqActivation(bits)
        self.adapter = Adapter(channels, reduction, beta_bits, beta_frac) if adapter else None
        self.g = wide_shift(bits, adapter, beta_bits, beta_frac)
        self.enabled = False

    def enable(self, x: torch.Tensor | None = None, adapter_start: str = "fit") -> None:
        """Switch quantisation on (the adapter becomes quantised); initialise from ``x`` if given.

        ``adapter_start``: how the adapter starts (:meth:`.adapter.Adapter.init_quantisers`).
        """
        if self.adapter is not None:
            self.adapter.quantise()
        if x is not None:
            with torch.no_grad():
                init_step(self.act, x)
                if self.adapter is not None:
                    self.adapter.init_quantisers(self.wide_clip(x), adapter_start)
        self.enabled = True

    @property
    def step(self) -> float:
        """The learned step ``s``."""
        return float(self.act.s.detach())

    @property
    def wide_limit(self) -> float:
        """The real value where the wide codes saturate, ``(2^15 - 1) * s * 2^-G``."""
        return WIDE_MAX * 2.0 ** -self.g * float(self.act.s.detach())

    def wide_clip(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp ``x`` where its wide codes saturate: ``(2^15 - 1) * s * 2^-G`` (identity when off)."""
        if not self.enabled:
            return x
        return torch.clamp(x, max=self.wide_limit)

    def beta(self, x: torch.Tensor) -> torch.Tensor | None:
        """``beta`` per sample (``N x 1``), or None without an adapter."""
        return None if self.adapter is None else self.adapter(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        x = self.wide_clip(x)
        if self.adapter is None:
            return self.act(x, 1.0)
        beta = self.adapter(x).to(x.dtype)
        # Eq. 9's dL/dbeta sums over the image's C*H*W elements with no scale (the authors'
        # code); under SGD that moved beta to its clamps in a few steps. It gets LSQ's scale
        # 1 / sqrt(N * Q_p), N the elements of one image, as Eq. 8's step does (docs/qat.md).
        beta = grad_scale(beta, 1.0 / math.sqrt(x[0].numel() * self.act.qp))
        return self.act(x, beta.reshape((-1,) + (1,) * (x.dim() - 1)))
