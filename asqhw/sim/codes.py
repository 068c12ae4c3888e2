"""Weight-code decoding and the per-architecture product (docs/datapath.md sections 3-4).

Everything here is exact Python-integer arithmetic on small tables (one entry per
activation code and weight code); the layer kernels only ever look these tables up.
"""

from __future__ import annotations

from functools import lru_cache
from math import isqrt

import numpy as np

from asqhw.core.params import Datapath

__all__ = ["decode_weight", "lut_entry", "product", "product_table", "product_terms", "to_int64"]


def decode_weight(dp: Datapath, code: int) -> tuple[int, int | None]:
    """Decode one weight code (section 3).

    Returns ``(q, None)`` for ``uniform`` (the code is the integer ``q``) and
    ``(sgn, W)`` for ``pot``/``post``, with ``W = None`` for a zero weight
    (``m = 0``, either sign). The code must be valid for ``dp``.
    """
    if dp.fmt == "uniform":
        return code, None
    m = code & ((1 << dp.m_bits) - 1)
    sgn = code >> dp.m_bits
    return sgn, (m - 1 if m else None)


def lut_entry(a: int, w: int, f: int) -> int:
    """``LUT[W][A]`` of the ``lut`` architecture: ``A * 2^(F - W/2)`` rounded to nearest, odd-symmetric."""
    mag = (isqrt(a * a << (2 * f - w + 2)) + 1) >> 1
    return -mag if a < 0 else mag


def _neg(sgn: int, v: int) -> int:
    return -v if sgn else v


def product(dp: Datapath, a: int, code: int) -> tuple[int, int]:
    """The product ``(P, k)`` of activation code ``a`` and weight code ``code`` (section 4)."""
    if dp.fmt == "uniform":
        return a * code, 0
    sgn, w = decode_weight(dp, code)
    if w is None:
        return 0, 0
    if dp.arch == "shift":
        return _neg(sgn, a << (dp.e_max - w)), 0
    f = dp.frac_bits
    if w % 2 == 0:
        return _neg(sgn, a << (f - w // 2)), 0
    if dp.arch == "lut":
        return _neg(sgn, lut_entry(a, w, f)), 0
    return _neg(sgn, a << (f - (w - 1) // 2)), 1


def to_int64(v: int) -> int:
    """``v`` reduced modulo ``2^64`` into the signed 64-bit range (exact when it already fits)."""
    return ((v + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def _valid_codes(dp: Datapath):
    lo, hi = dp.w_range
    for code in range(lo, hi + 1):
        if dp.fmt == "uniform" or (code & ((1 << dp.m_bits) - 1)) <= dp.e_max + 1:
            yield code


@lru_cache(maxsize=64)
def _table(dp: Datapath) -> np.ndarray:
    a_lo, a_hi = dp.a_range
    w_lo, w_hi = dp.w_range
    tab = np.zeros((dp.n_acc, a_hi - a_lo + 1, w_hi - w_lo + 1), dtype=np.int64)
    for code in _valid_codes(dp):
        for a in range(a_lo, a_hi + 1):
            p, k = product(dp, a, code)
            tab[k, a - a_lo, code - w_lo] = to_int64(p)
    tab.setflags(write=False)
    return tab


def product_table(dp: Datapath) -> np.ndarray:
    """All products of ``dp``: int64 array ``(n_acc, n_act_codes, n_weight_codes)``.

    Entry ``[k, A - a_range[0], code - w_range[0]]`` is ``P`` if the product of
    ``A`` and ``code`` goes to accumulator ``k``, else 0; invalid codes give 0.
    ``P`` is stored modulo ``2^64`` (two's complement); it is exact whenever
    ``|P| < 2^63``, and the reduction commutes with the accumulator wrap
    (section 5) because ``n_acc_bits <= 40`` divides 64. Read-only.
    """
    return _table(dp)


@lru_cache(maxsize=64)
def _terms(dp: Datapath):
    a_lo, a_hi = dp.a_range
    w_lo, w_hi = dp.w_range
    acts = list(range(a_lo, a_hi + 1))
    n_w = w_hi - w_lo + 1
    ident = [a for a in acts]
    if dp.fmt == "uniform":
        v = [0] * n_w
        for code in _valid_codes(dp):
            v[code - w_lo] = code
        return ((ident, (v,)),)
    vals = [[0] * n_w for _ in range(dp.n_acc)]
    odd = {}
    for code in _valid_codes(dp):
        sgn, w = decode_weight(dp, code)
        if w is None:
            continue
        i = code - w_lo
        if dp.arch == "shift":
            vals[0][i] = _neg(sgn, 1 << (dp.e_max - w))
        elif w % 2 == 0:
            vals[0][i] = _neg(sgn, 1 << (dp.frac_bits - w // 2))
        elif dp.arch == "split":
            vals[1][i] = _neg(sgn, 1 << (dp.frac_bits - (w - 1) // 2))
        else:
            odd.setdefault(w, [0] * n_w)[i] = _neg(sgn, 1)
    terms = [(ident, tuple(vals))]
    for w in sorted(odd):
        terms.append(([lut_entry(a, w, dp.frac_bits) for a in acts], (odd[w],)))
    return tuple(terms)


def product_terms(dp: Datapath):
    """The products as a sum of separable terms, the basis of the GEMM path.

    Returns a tuple of ``(g, v)``: ``g`` lists an integer per activation code
    (``g[A - a_range[0]]``), ``v[k]`` an integer per weight code, such that for
    every accumulator ``k``: ``P_k(A, code) = sum over terms of g[A] * v[k][code]``
    (``v`` has ``n_acc`` rows). Every ``g`` maps code 0 to 0. ``mul``, ``shift``
    and ``split`` have one term (``g(A) = A``); ``lut`` adds one term per odd
    exponent ``W`` with ``g(A) = LUT[W][A]`` and ``v = +-1`` on codes of exponent ``W``.
    Values are Python integers (unbounded).
    """
    return _terms(dp)
