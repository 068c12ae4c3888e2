"""QAT fake quantisers (PyTorch) that also give the integer codes of docs/datapath.md section 3.

Three quantisers, each an ``nn.Module`` with learnable scales:

- :class:`LsqWeight` -- uniform weights, LSQ (learned per-output-channel step).
- :class:`PowerWeight` -- ``pot`` (base 2, paper Eq. 3) and ``post`` (base sqrt(2),
  paper Eq. 17) weights with a learnable per-output-channel scale ``alpha``.
- :class:`AsqActivation` -- ASQ activations, step ``s_a = s * beta`` (paper Eq. 4-5),
  dequantised with ``s_a`` (see ``shared/REFERENCE.md`` on Eq. 6), gradients of Eq. 7-9.

Every quantiser's ``forward`` returns the float fake-quant tensor; ``codes`` returns the
integer codes (int64) in the spec's encoding, and ``dequantize`` maps codes back to reals.
Rounding is ``torch.round`` (round half to even) throughout.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
from torch import nn

__all__ = [
    "LsqWeight",
    "init_step",
    "PowerWeight",
    "AsqActivation",
    "asq_fake_quant",
    "power_levels",
    "level_value",
    "power_codes",
    "power_index",
    "power_decode",
    "grad_scale",
    "round_ste",
]


def grad_scale(t: torch.Tensor, scale: float) -> torch.Tensor:
    """Return ``t`` unchanged in the forward pass, with its gradient multiplied by ``scale``."""
    return (t - t * scale).detach() + t * scale


def round_ste(t: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (ties to even) with a straight-through gradient."""
    return (torch.round(t) - t).detach() + t


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a per-output-channel vector so that it broadcasts against ``like`` (channel dim 0)."""
    return t.reshape((-1,) + (1,) * (like.dim() - 1))


# ---------------------------------------------------------------------------
# uniform weights: LSQ
# ---------------------------------------------------------------------------
class LsqWeight(nn.Module):
    """LSQ uniform weight quantiser with a learnable per-output-channel step.

    Codes are ``b_w``-bit two's complement integers ``q`` in ``[-2^(b_w-1), 2^(b_w-1)-1]``
    (docs/datapath.md section 3.1); the real weight is ``alpha_c * q``.

    Parameters
    ----------
    bits : int
        Weight width ``b_w`` (2..8).
    channels : int
        Number of output channels (dim 0 of the weight tensor).
    """

    def __init__(self, bits: int, channels: int):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in 2..8, not {bits!r}")
        self.bits = bits
        self.qn = -(2 ** (bits - 1))
        self.qp = 2 ** (bits - 1) - 1
        self.alpha = nn.Parameter(torch.ones(channels, dtype=torch.float64))

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        """Set the step of each channel to ``2 * mean|w_c| / sqrt(Qp)`` (LSQ initialisation)."""
        mean = w.abs().reshape(w.shape[0], -1).mean(dim=1)
        self.alpha.copy_((2 * mean / math.sqrt(self.qp)).to(self.alpha.dtype))

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes ``q = clamp(round(w / alpha), Qn, Qp)`` as int64."""
        with torch.no_grad():
            v = w / _per_channel(self.alpha, w)
            return torch.clamp(torch.round(v), self.qn, self.qp).to(torch.int64)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """Real weights ``alpha_c * q``."""
        return q.to(self.alpha.dtype) * _per_channel(self.alpha, q)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Fake-quantised weights; LSQ gradients, step gradient scaled by ``1/sqrt(numel*Qp)``."""
        alpha = _per_channel(grad_scale(self.alpha, 1.0 / math.sqrt(w.numel() * self.qp)), w)
        return round_ste(torch.clamp(w / alpha, self.qn, self.qp)) * alpha


# ---------------------------------------------------------------------------
# pot / post weights
# ---------------------------------------------------------------------------
def level_value(fmt: str, w: int) -> float:
    """Magnitude ``base^-W`` as a correctly rounded float (exact for ``pot`` and even ``W``)."""
    if fmt == "pot":
        return math.ldexp(1.0, -w)
    return math.ldexp(1.0 if w % 2 == 0 else math.sqrt(0.5), -(w // 2))


def power_levels(base: str, e_max: int, dtype=torch.float64) -> torch.Tensor:
    """Non-negative levels ``[0, base^-E_max, ..., base^-1, 1]`` in ascending order.

    ``base`` is ``"pot"`` (2) or ``"post"`` (sqrt(2)). Index ``i >= 1`` of the result is
    the level of magnitude index ``m = E_max + 2 - i``; index 0 is zero.
    """
    if base not in ("pot", "post"):
        raise ValueError(f"base must be 'pot' or 'post', not {base!r}")
    return torch.tensor([0.0] + [level_value(base, w) for w in range(e_max, -1, -1)], dtype=dtype)


def _level_exact(base: str, w: int) -> tuple[Fraction, Fraction]:
    """Level ``base^-w`` exactly, as ``(p, q)`` meaning ``p + q*sqrt(2)``."""
    if base == "pot" or w % 2 == 0:
        return Fraction(1, 1 << (w if base == "pot" else w // 2)), Fraction(0)
    return Fraction(0), Fraction(1, 1 << (w // 2 + 1))          # 2^-(w//2) / sqrt(2)


def _above(x: Fraction, p: Fraction, q: Fraction) -> bool:
    """``x > p + q*sqrt(2)`` exactly (``q >= 0``)."""
    d = x - p
    if q == 0:
        return d > 0
    return d > 0 and d * d > 2 * q * q


@lru_cache(maxsize=None)
def _thresholds(base: str, e_max: int, dtype: torch.dtype) -> torch.Tensor:
    """For each pair of adjacent levels, the smallest ``dtype`` value strictly above their midpoint.

    A magnitude goes to the larger level of a pair exactly when it is at least the
    threshold, i.e. strictly above the exact (real) midpoint; a magnitude equal to a
    midpoint (possible for ``pot`` and for zero and an even ``post`` level) goes to the
    smaller level.
    """
    np_t = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
            torch.bfloat16: None}[dtype]
    if np_t is None:
        raise ValueError("bfloat16 is not supported")
    levels = [(Fraction(0), Fraction(0))] + [_level_exact(base, w) for w in range(e_max, -1, -1)]
    out = []
    for (p0, q0), (p1, q1) in zip(levels[:-1], levels[1:]):
        p, q = (p0 + p1) / 2, (q0 + q1) / 2
        c = np_t(float(p) + float(q) * math.sqrt(2.0))
        up, down = np_t(np.inf), np_t(-np.inf)
        while not _above(Fraction(float(c)), p, q):            # move up to the first value above
            c = np.nextafter(c, up)
        while _above(Fraction(float(np.nextafter(c, down))), p, q):
            c = np.nextafter(c, down)
        out.append(float(c))
    return torch.tensor(out, dtype=dtype)


def power_index(mag: torch.Tensor, base: str, e_max: int) -> torch.Tensor:
    """Index into :func:`power_levels` of the level exactly nearest to ``mag`` (in [0, 1]).

    Decided against the exact real midpoints of adjacent levels (irrational for
    ``post``), a tie going to the smaller level; the result does not depend on the float
    type of ``mag`` beyond its value.
    """
    return torch.searchsorted(_thresholds(base, e_max, mag.dtype), mag.contiguous(), right=True)


def power_codes(v: torch.Tensor, base: str, e_max: int, m_bits: int) -> torch.Tensor:
    """Code words ``(sgn << m_bits) | m`` of the nearest level to ``v`` (already divided by alpha).

    ``v`` is clamped to [-1, 1]; the exactly nearest level is chosen in the linear domain by
    magnitude (:func:`power_index`), a tie going to the smaller magnitude. ``sgn`` is 1 for
    negative ``v``, also when the magnitude rounds to zero (which gives the "-0" code word).
    """
    mag = torch.clamp(v, -1.0, 1.0).abs()
    idx = power_index(mag, base, e_max)
    m = torch.where(idx == 0, torch.zeros_like(idx), e_max + 2 - idx)
    sgn = (v < 0).to(torch.int64)
    return (sgn << m_bits) | m.to(torch.int64)


def power_decode(codes: torch.Tensor, base: str, e_max: int, m_bits: int,
                 dtype=torch.float64) -> torch.Tensor:
    """Signed real level of each code word (``-0`` decodes to 0)."""
    codes = codes.to(torch.int64)
    m = codes & ((1 << m_bits) - 1)
    sgn = (codes >> m_bits) & 1
    if bool((m > e_max + 1).any()) or bool((codes >> (m_bits + 1)).any()):
        raise ValueError("weight code out of range")
    table = torch.tensor([0.0] + [level_value(base, w) for w in range(e_max + 1)], dtype=dtype)
    mag = table[m]  # m = 0 is zero, m = W + 1 otherwise
    return torch.where(sgn == 1, -mag, mag)


class _PowerRound(torch.autograd.Function):
    """Signed level ``levels[idx]`` of ``v`` (index chosen by the caller); straight-through gradient."""

    @staticmethod
    def forward(ctx, v, levels, idx, negative):
        return torch.where(negative, -levels[idx], levels[idx])

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None


class PowerWeight(nn.Module):
    """POT / POST weight quantiser with a learnable per-output-channel scale ``alpha``.

    Levels are ``alpha_c * {0, ±base^-W : 0 <= W <= E_max}`` (Eq. 3 for ``pot``, Eq. 17 for
    ``post``); ``w / alpha`` is clamped to [-1, 1] and mapped to the nearest level in the linear
    domain. Gradients are straight-through: ``d/dw = 1`` inside the clamp, 0 outside;
    ``d/dalpha = level - w/alpha`` inside and ``sign(w)`` outside (no gradient scale).

    Parameters
    ----------
    fmt : {"pot", "post"}
        Base 2 or sqrt(2).
    bits : int
        Nominal width ``b_w``.
    channels : int
        Number of output channels.
    e_max : int, optional
        Largest exponent; default ``2^(b_w-1) - 2`` (fits ``b_w`` bits); ``2^(b_w-1) - 1`` is
        the paper's Eq. 17 set (``b_w + 1`` bits of storage).
    """

    def __init__(self, fmt: str, bits: int, channels: int, e_max: int | None = None):
        super().__init__()
        if fmt not in ("pot", "post"):
            raise ValueError(f"fmt must be 'pot' or 'post', not {fmt!r}")
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in 2..8, not {bits!r}")
        e_max = 2 ** (bits - 1) - 2 if e_max is None else e_max
        if not 0 <= e_max <= 2 ** (bits - 1) - 1:
            raise ValueError(f"e_max must be in 0..{2 ** (bits - 1) - 1}, not {e_max!r}")
        self.fmt, self.bits, self.e_max = fmt, bits, e_max
        self.m_bits = bits - 1 if e_max <= 2 ** (bits - 1) - 2 else bits
        self.alpha = nn.Parameter(torch.ones(channels, dtype=torch.float64))

    @property
    def levels(self) -> torch.Tensor:
        """Non-negative levels, ascending (see :func:`power_levels`)."""
        return power_levels(self.fmt, self.e_max, self.alpha.dtype)

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        """Set ``alpha_c`` to the 99th percentile of ``|w|`` in channel ``c``."""
        q = torch.quantile(w.abs().reshape(w.shape[0], -1).to(self.alpha.dtype), 0.99, dim=1)
        self.alpha.copy_(q)

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Code words ``(sgn << m_bits) | m`` as int64 (see :func:`power_codes`) of ``w / alpha`` in float64."""
        with torch.no_grad():
            v64 = w.to(torch.float64) / _per_channel(self.alpha.to(torch.float64), w)
            return power_codes(v64, self.fmt, self.e_max, self.m_bits)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Real weights ``alpha_c * level(code)``."""
        lv = power_decode(codes, self.fmt, self.e_max, self.m_bits, self.alpha.dtype)
        return lv * _per_channel(self.alpha, codes)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Fake-quantised weights ``alpha * level(clamp(w / alpha, -1, 1))``.

        The level is the one :meth:`codes` chooses: its index is computed from the same
        float64 ``w / alpha`` (:func:`power_index`), whatever the dtype of ``w``.
        """
        alpha = _per_channel(self.alpha, w)
        v = torch.clamp(w / alpha, -1.0, 1.0)
        with torch.no_grad():
            v64 = w.detach().to(torch.float64) / _per_channel(self.alpha.detach().to(torch.float64), w)
            idx = power_index(torch.clamp(v64, -1.0, 1.0).abs(), self.fmt, self.e_max)
        return _PowerRound.apply(v, self.levels.to(v.dtype), idx, v64 < 0) * alpha


# ---------------------------------------------------------------------------
# activations: ASQ
# ---------------------------------------------------------------------------
class _AsqFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, beta, qn, qp, g_scale):
        s_a = s * beta
        v = x / s_a
        x_int = torch.round(torch.clamp(v, qn, qp))
        ctx.save_for_backward(v, x_int, s, beta)
        ctx.qn, ctx.qp, ctx.g_scale = qn, qp, g_scale
        return x_int * s_a

    @staticmethod
    def backward(ctx, g):
        v, x_int, s, beta = ctx.saved_tensors
        qn, qp = ctx.qn, ctx.qp
        low, high = v < qn, v > qp
        inside = ~(low | high)
        # Eq. 7: d x_hat / d s_a per element
        d_sa = torch.where(low, torch.full_like(v, qn), torch.where(high, torch.full_like(v, qp), x_int - v))
        g_sa = g * d_sa
        grad_x = torch.where(inside, g, torch.zeros_like(g))
        grad_s = (g_sa * beta).sum().reshape(s.shape) * ctx.g_scale  # Eq. 8, LSQ scale
        grad_beta = g_sa * s  # Eq. 9, no scale
        # reduce to beta's broadcast shape
        while grad_beta.dim() > beta.dim():
            grad_beta = grad_beta.sum(0)
        for d, n in enumerate(beta.shape):
            if n == 1 and grad_beta.shape[d] != 1:
                grad_beta = grad_beta.sum(d, keepdim=True)
        return grad_x, grad_s, grad_beta, None, None, None


def asq_fake_quant(x: torch.Tensor, s: torch.Tensor, beta: torch.Tensor,
                   qn: int, qp: int, g_scale: float) -> torch.Tensor:
    """ASQ fake quantisation ``clamp(round(x / (s*beta)), qn, qp) * s * beta``.

    Backward (Eq. 7-9): the per-element factor ``f`` is ``qn`` / ``qp`` where ``x/s_a`` is
    clipped and ``round(x/s_a) - x/s_a`` inside; ``grad_s = g_scale * sum(g * f * beta)``,
    ``grad_beta = g * f * s`` summed to ``beta``'s shape, ``grad_x = g`` inside the range, 0
    outside.
    """
    return _AsqFakeQuant.apply(x, s, beta, qn, qp, g_scale)


class AsqActivation(nn.Module):
    """ASQ activation quantiser: learnable step ``s`` times a per-sample factor ``beta``.

    Codes are ``A = clamp(round(x / (s*beta)), Qn, Qp)``: unsigned ``[0, 2^b_a - 1]`` or signed
    ``[-2^(b_a-1), 2^(b_a-1) - 1]`` (docs/datapath.md section 2). ``beta`` is any tensor that
    broadcasts against ``x`` (one value per sample, or a plain number).

    Parameters
    ----------
    bits : int
        Activation width ``b_a`` (2..8).
    signed : bool
        Signed codes (a layer input that is not the output of a ReLU).
    """

    def __init__(self, bits: int, signed: bool = False):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in 2..8, not {bits!r}")
        self.bits, self.signed = bits, bool(signed)
        self.qn = -(2 ** (bits - 1)) if signed else 0
        self.qp = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        self.s = nn.Parameter(torch.ones((), dtype=torch.float64))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Set ``s = 2 * mean|x| / sqrt(Qp)`` (LSQ initialisation)."""
        self.s.copy_(2 * x.abs().mean().to(self.s.dtype) / math.sqrt(self.qp))

    def _beta(self, beta, x):
        return torch.as_tensor(beta, dtype=x.dtype)

    def codes(self, x: torch.Tensor, beta) -> torch.Tensor:
        """Integer activation codes as int64."""
        with torch.no_grad():
            v = x / (self.s * self._beta(beta, x))
            return torch.round(torch.clamp(v, self.qn, self.qp)).to(torch.int64)

    def dequantize(self, codes: torch.Tensor, beta) -> torch.Tensor:
        """Real activations ``A * s * beta``."""
        return codes.to(self.s.dtype) * (self.s * self._beta(beta, codes.to(self.s.dtype)))

    def forward(self, x: torch.Tensor, beta) -> torch.Tensor:
        """Fake-quantised activations with the gradients of :func:`asq_fake_quant`."""
        b = beta if isinstance(beta, torch.Tensor) else self._beta(beta, x)
        return asq_fake_quant(x, self.s.to(x.dtype), b, self.qn, self.qp,
                              1.0 / math.sqrt(x.numel() * self.qp))


@torch.no_grad()
def init_step(q: AsqActivation, x: torch.Tensor) -> None:
    """LSQ initialisation of ``q`` from ``x``; an all-zero ``x`` (a dead tensor) gives ``1/Q_p``."""
    q.init_from(x)
    if not (math.isfinite(float(q.s.detach())) and float(q.s.detach()) > 0):
        q.s.fill_(1.0 / q.qp)
