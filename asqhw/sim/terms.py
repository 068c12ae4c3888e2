"""The term algebra of the GEMM paths: every product as a sum of separable terms ``g_t(A) * v_t[k][code]``.

:func:`term_tables` gives the float path's terms (``sim.codes.product_terms`` with the
weight values reduced modulo ``2^n``); :func:`byte_terms` the int paths' terms, rewritten
by :func:`linear_part` and :func:`split_bytes` so that every activation term is a byte
where possible (docs/sim.md, "GEMM path", "Direct convolution kernels"). Every rewrite
keeps every product congruent modulo ``2^n``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from asqhw.core.params import Datapath

from .codes import product_terms

__all__ = ["BYTE_SPLIT", "wrap_int", "term_tables", "linear_part", "split_bytes", "byte_terms"]

BYTE_SPLIT = 64      # a non-negative term above 255 is split into g % 64 and g // 64 (weights v, 64 v)


def wrap_int(v: int, n: int) -> int:
    """The Python integer ``v`` wrapped to ``n``-bit two's complement (docs/datapath.md section 5)."""
    return ((v + (1 << (n - 1))) & ((1 << n) - 1)) - (1 << (n - 1))


def _wrapped(rows, nbits):
    return np.array([[wrap_int(int(e), nbits) for e in row] for row in rows], dtype=np.int64)


@lru_cache(maxsize=64)
def term_tables(dp: Datapath, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Activation transforms ``g`` (int64, (n_t, n_a)) and weight values ``v`` ((n_t, n_acc, n_w)).

    ``v`` is reduced modulo ``2^nbits`` into the signed range: the products are only
    needed modulo ``2^nbits``, and ``g*v`` reduced that way is congruent to ``g*v``.
    Entries that do not fit int64 after the reduction cannot occur (``nbits <= 40``);
    ``g`` is at most ``2^8 * 2^16`` in magnitude.
    """
    terms = product_terms(dp)
    g = np.array([t[0] for t in terms], dtype=np.int64)
    v = np.array([_wrapped(t[1], nbits) for t in terms], dtype=np.int64)
    return g, v


def linear_part(g, v, a0, nbits):
    """Move the largest linear part ``k_t * A`` of every non-negative term into the identity term.

    For unsigned codes (``a0 >= 0``) and a term with ``g_t(0) = 0`` and ``g_t >= 0``, let
    ``k_t = min over A >= 1 of floor(g_t(A) / A)``. Then ``g_t(A) * v_t = A * (k_t v_t) +
    e_t(A) * v_t`` with ``e_t = g_t - k_t A >= 0``: the identity term's weights become ``v_0 +
    sum_t k_t v_t`` (reduced modulo ``2^nbits`` into the signed range like ``v``) and ``g_t``
    becomes ``e_t``. For ``lut`` (``g_t(A) = LUT[W][A]``, about ``A * 2^(F - W/2)``) the
    residues are at most about ``A``: 4-bit codes give bytes without a split. Terms whose
    residue is 0 everywhere are dropped. Returns ``g, v`` unchanged when there is no
    identity term or the codes are signed.
    """
    n_a = g.shape[1]
    codes = np.arange(a0, a0 + n_a, dtype=np.int64)
    ident = [t for t in range(g.shape[0]) if (g[t] == codes).all()]
    if a0 < 0 or not ident:
        return g, v
    i0 = ident[0]
    g, v = g.copy(), v.copy()
    pos = codes > 0
    for t in range(g.shape[0]):
        if t == i0 or not pos.any() or g[t][codes == 0].any() or g[t].min() < 0:
            continue
        k = int((g[t][pos] // codes[pos]).min())
        if k <= 0:
            continue
        g[t] = g[t] - k * codes
        v[i0] = _wrapped(v[i0].astype(object) + k * v[t].astype(object), nbits)   # Python integers: exact
    keep = [t for t in range(g.shape[0]) if t == i0 or g[t].any()]     # a residue of 0 everywhere adds nothing
    return g[keep], v[keep]


def split_bytes(g, v, nbits):
    """Every term above 255 split in two bytes: ``g % 64`` (weights ``v``) and ``g // 64`` (weights ``64 v``).

    ``g * v = (g % 64) * v + (g // 64) * (64 v)`` for ``g >= 0`` (``64 v`` reduced modulo
    ``2^nbits`` into the signed range like ``v``). Only done when every ``g`` is non-negative
    and below ``2^14`` (``g // 64 <= 255``); otherwise the terms are returned as they are.
    """
    big = [t for t in range(g.shape[0]) if int(g[t].max(initial=0)) > 255]
    if not big or int(g.min(initial=0)) < 0 or int(g.max(initial=0)) >= 1 << 14:
        return g, v
    gs, vs = [], []
    for t in range(g.shape[0]):
        if t in big:
            gs += [g[t] % BYTE_SPLIT, g[t] // BYTE_SPLIT]
            vs += [v[t], _wrapped(v[t].astype(object) * BYTE_SPLIT, nbits)]
        else:
            gs.append(g[t])
            vs.append(v[t])
    return np.array(gs, dtype=np.int64), np.array(vs, dtype=np.int64)


@lru_cache(maxsize=64)
def byte_terms(dp: Datapath, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """The int paths' terms: :func:`term_tables` after :func:`linear_part` and :func:`split_bytes`.

    For ``lut`` with 4-bit or 8-bit unsigned codes this gives four byte terms (``A`` and
    three residues for ``E_max = 6``).
    """
    g, v = term_tables(dp, nbits)
    return split_bytes(*linear_part(g, v, dp.a_range[0], nbits), nbits)
