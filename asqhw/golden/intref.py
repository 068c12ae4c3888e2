"""Integer reference of docs/datapath.md (sections 3-8) in PyTorch int64.

Written from the spec alone. Every function here is exact integer arithmetic; no float
enters. The layer sums are computed as int64 matrix products: each architecture's product
``P(A, code)`` is split into a few terms ``f_j(A) * g_j(code)`` (``f`` a function of the
activation code, ``g`` an integer per weight), which is exact because every term is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as tfn

from asqhw.core.params import Datapath
from asqhw.core.vectors import Case

__all__ = [
    "reference",
    "product_table",
    "products",
    "lut_table",
    "decode_weights",
    "wrap",
    "requantize",
    "accumulate_linear",
    "accumulate_conv2d",
]

I64 = torch.int64


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int64) if not isinstance(a, torch.Tensor) else a).to(I64)


def decode_weights(dp: Datapath, codes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split pot/post code words into ``(zero, sgn, W)`` int64 tensors (section 3.2).

    ``zero`` is 1 where ``m = 0`` (both "+0" and "-0"); ``W = m - 1`` is 0 there.
    Raises ValueError on an out-of-range code word.
    """
    if dp.fmt == "uniform":
        raise ValueError("uniform codes are plain integers; nothing to decode")
    c = _t(codes)
    m = c & ((1 << dp.m_bits) - 1)
    bad = (c < 0) | (c >= (1 << dp.storage_bits)) | (m > dp.e_max + 1)
    if bool(bad.any()):
        raise ValueError(f"{int(bad.sum())} weight code(s) out of range for {dp.w_bits}-bit {dp.fmt}")
    sgn = (c >> dp.m_bits) & 1
    zero = (m == 0).to(I64)
    return zero, sgn, (m - 1).clamp(min=0)


def lut_table(dp: Datapath) -> torch.Tensor:
    """The ``lut`` table of section 4, int64 of shape ``(E_max + 1, n_activation_codes)``.

    Row ``W`` (odd) holds ``LUT[W][A]`` for ``A = a_range[0] .. a_range[1]`` (column
    ``A - a_range[0]``), computed with the exact integer square root. Even rows hold the exact
    shift ``A << (F - W/2)``, so row ``W`` is the unsigned-weight product for every ``W``.
    """
    if dp.arch != "lut":
        raise ValueError(f"lut_table needs arch 'lut', not {dp.arch!r}")
    lo, hi = dp.a_range
    f = dp.frac_bits
    rows = []
    for w in range(dp.e_max + 1):
        row = []
        for a in range(lo, hi + 1):
            if w % 2 == 0:
                row.append(a << (f - w // 2))
            else:
                mag = (math.isqrt(a * a << (2 * f - w + 2)) + 1) >> 1
                row.append(mag if a >= 0 else -mag)
        rows.append(row)
    return torch.tensor(rows, dtype=I64)


def _check_acts(dp: Datapath, a: torch.Tensor) -> torch.Tensor:
    lo, hi = dp.a_range
    if a.numel() and (int(a.min()) < lo or int(a.max()) > hi):
        raise ValueError(f"activation codes must be in [{lo}, {hi}], got {int(a.min())}..{int(a.max())}")
    return a


def _pow2(e: torch.Tensor) -> torch.Tensor:
    return torch.bitwise_left_shift(torch.ones_like(e), e)


def _neg(x: torch.Tensor, sgn: torch.Tensor) -> torch.Tensor:
    return torch.where(sgn == 1, -x, x)


def products(dp: Datapath, a, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise product ``P`` and accumulator index ``k`` of section 4.

    ``a`` and ``codes`` are integer arrays that broadcast together; returns int64 tensors.
    """
    a, c = torch.broadcast_tensors(_check_acts(dp, _t(a)), _t(codes))
    k = torch.zeros_like(a)
    if dp.arch == "mul":
        return a * c, k
    zero, sgn, w = decode_weights(dp, c)
    if dp.arch == "shift":
        p = _neg(a * _pow2(dp.e_max - w), sgn)
    elif dp.arch == "split":
        s = dp.frac_bits
        odd = w & 1
        p = _neg(a * _pow2(s - (w - odd) // 2), sgn)
        k = odd * (1 - zero)
    else:  # lut
        table = lut_table(dp)
        p = _neg(table[w, a - dp.a_range[0]], sgn)
    return torch.where(zero == 1, torch.zeros_like(p), p), k


def product_table(dp: Datapath) -> np.ndarray:
    """Every product: int64 ``(n_acc, n_activation_codes, n_weight_codes)``.

    Entry ``[k, A - a_range[0], code - w_range[0]]`` is ``P`` when the pair's accumulator
    index is ``k``, else 0. Out-of-range code words give 0 in every row.
    """
    alo, ahi = dp.a_range
    wlo, whi = dp.w_range
    a = torch.arange(alo, ahi + 1, dtype=I64)[:, None]
    c = torch.arange(wlo, whi + 1, dtype=I64)[None, :]
    valid = torch.ones(c.shape, dtype=torch.bool)
    if dp.fmt != "uniform":
        valid = (c & ((1 << dp.m_bits) - 1)) <= dp.e_max + 1
    p, k = products(dp, a, torch.where(valid, c, torch.zeros_like(c)))
    out = torch.zeros((dp.n_acc,) + p.shape, dtype=I64)
    for i in range(dp.n_acc):
        out[i] = torch.where((k == i) & valid, p, torch.zeros_like(p))
    return out.numpy()


def _terms(dp: Datapath, w: torch.Tensor) -> list[tuple[int, object, torch.Tensor]]:
    """Split ``P`` into terms ``(k, f, g)``: ``P = sum f(A) * g(code)`` over terms of index k.

    ``f`` is None for ``f(A) = A``, else an int64 table indexed by ``A - a_range[0]``.
    """
    if dp.arch == "mul":
        return [(0, None, w)]
    zero, sgn, e = decode_weights(dp, w)
    nz = 1 - zero
    if dp.arch == "shift":
        return [(0, None, _neg(_pow2(dp.e_max - e), sgn) * nz)]
    odd = e & 1
    if dp.arch == "split":
        s = dp.frac_bits
        g = _neg(_pow2(s - (e - odd) // 2), sgn) * nz
        return [(0, None, g * (1 - odd)), (1, None, g * odd)]
    f = dp.frac_bits
    terms = [(0, None, _neg(_pow2(f - e // 2), sgn) * nz * (1 - odd))]
    table = lut_table(dp)
    for wo in sorted(set(e[(odd == 1) & (nz == 1)].tolist())):
        g = _neg(torch.ones_like(e), sgn) * ((e == wo) & (nz == 1)).to(I64)
        terms.append((0, table[wo], g))
    return terms


def wrap(x, bits: int) -> torch.Tensor:
    """Two's complement wrap to ``bits`` bits: ``((x + 2^(n-1)) mod 2^n) - 2^(n-1)``."""
    half = 1 << (bits - 1)
    return torch.remainder(_t(x) + half, 1 << bits) - half


def _apply_f(f, x: torch.Tensor, a_lo: int) -> torch.Tensor:
    return x if f is None else f[x - a_lo]


def accumulate_linear(dp: Datapath, x, w, acc_bits: int) -> torch.Tensor:
    """Accumulators of a linear layer: int64 ``(n_acc, N, C_out)`` (section 8)."""
    x, w = _check_acts(dp, _t(x)), _t(w)
    acc = torch.zeros((dp.n_acc, x.shape[0], w.shape[0]), dtype=I64)
    for k, f, g in _terms(dp, w):
        acc[k] += _apply_f(f, x, dp.a_range[0]) @ g.T
    return wrap(acc, acc_bits)


def accumulate_conv2d(dp: Datapath, x, w, *, stride: int, padding: int, groups: int,
                      acc_bits: int) -> torch.Tensor:
    """Accumulators of a conv2d layer: int64 ``(n_acc, N, C_out, H_o, W_o)`` (section 8)."""
    x, w = _check_acts(dp, _t(x)), _t(w)
    n, ci, _, _ = x.shape
    co, cig, kh, kw = w.shape
    xp = tfn.pad(x, (padding,) * 4)  # code 0 outside the input
    cols = xp.unfold(2, kh, stride).unfold(3, kw, stride)  # N, Ci, Ho, Wo, kh, kw
    ho, wo = cols.shape[2], cols.shape[3]
    # N, G, Ci/G, Ho, Wo, kh, kw -> N, G, (Ci/G kh kw), (Ho Wo)
    cols = cols.reshape(n, groups, cig, ho, wo, kh, kw).permute(0, 1, 2, 5, 6, 3, 4)
    cols = cols.reshape(n, groups, cig * kh * kw, ho * wo)
    acc = torch.zeros((dp.n_acc, n, groups, co // groups, ho * wo), dtype=I64)
    for k, f, g in _terms(dp, w):
        gg = g.reshape(groups, co // groups, cig * kh * kw)
        acc[k] += torch.matmul(gg, _apply_f(f, cols, dp.a_range[0]))
    return wrap(acc.reshape(dp.n_acc, n, co, ho, wo), acc_bits)


def requantize(acc, M, B, sh, lo: int, hi: int) -> torch.Tensor:
    """Section 6: ``t = sum_k M*acc_k + B``, round half toward +inf by ``sh``, clamp to [lo, hi].

    ``acc`` is ``(n_acc, N, C, ...)``; ``M`` ``(C, n_acc)``; ``B``, ``sh`` ``(C,)``.
    Returns int64 of shape ``(N, C, ...)``.
    """
    acc, M, B, sh = _t(acc), _t(M), _t(B), _t(sh)
    view = (-1,) + (1,) * (acc.dim() - 3)  # channel dim broadcast over spatial dims
    t = B.reshape(view).clone()
    for k in range(acc.shape[0]):
        t = t + M[:, k].reshape(view) * acc[k]
    shv = sh.reshape(view)
    half = torch.where(shv >= 1, _pow2((shv - 1).clamp(min=0)), torch.zeros_like(shv))
    r = torch.bitwise_right_shift(t + half, shv)
    return torch.clamp(r, lo, hi)


def reference(manifest: dict, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """Expected ``(acc, y)`` of one case from its manifest and arrays ``x, w, M, B, sh``.

    Returns ``acc`` int64 of shape ``(n_acc, N, C_out[, H_o, W_o])`` and ``y`` int16 of
    shape ``(N, C_out[, H_o, W_o])``.
    """
    case = Case(manifest, arrays)
    dp = case.datapath
    layer = case.layer
    bits = case.acc_bits
    if layer["kind"] == "linear":
        acc = accumulate_linear(dp, arrays["x"], arrays["w"], bits)
    else:
        acc = accumulate_conv2d(dp, arrays["x"], arrays["w"], stride=layer["stride"],
                                padding=layer["padding"], groups=layer["groups"], acc_bits=bits)
    lo, hi = case.out_range
    y = requantize(acc, arrays["M"], arrays["B"], arrays["sh"], lo, hi)
    return acc.numpy().astype(np.int64), y.numpy().astype(np.int16)
