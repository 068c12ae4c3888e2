"""Numba kernels of the operations between layers (docs/datapath.md sections 11-14).

Per-sample layer requantisation, residual addition, max and average pooling, the
adapter's pool, and the ``quant`` node. All arithmetic is int64 on values whose
bounds are stated per kernel (well inside 2^63: nothing relies on wrapping); every
kernel loops over a range ``i0 .. i1 - 1`` of samples or (sample, channel) pairs with
the GIL released (``sim.network`` runs one range per thread: serial kernels compile
in about half the time of ``prange`` ones) and writes int16 (codes, wide codes) or
int64 (sums) into an array given by the caller.
"""

# numba's cache keys an entry by this file's size and time stamp and imports the module the
# entry names: this edit (for the move to asqhw.sim) invalidates entries compiled under the
# old top-level name 'sim'.


from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["requant_layer", "add2", "maxpool", "avgpool", "pool_sums", "requant_scalar", "quant",
           "bitlen", "reciprocal"]


@njit(cache=True, inline="always")
def _rq(t, rnd, s, lo, hi):
    """``clamp((t + rnd) >> s, lo, hi)`` with ``rnd = 2^(s-1)`` (0 when ``s = 0``)."""
    r = (t + rnd) >> s
    if r < lo:
        return lo
    if r > hi:
        return hi
    return r


@njit(cache=True, inline="always")
def _half(s):
    return (np.int64(1) << (s - 1)) if s >= 1 else np.int64(0)


@njit(cache=True)
def bitlen(v):
    """Number of bits of the non-negative integer ``v`` (``bitlen(0) = 0``)."""
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@njit(cache=True)
def reciprocal(beta_q):
    """``(L, R)`` of section 14: ``L = bitlen(beta_q)``, ``R = (2^(L+15) + beta_q) // (2*beta_q)``."""
    L = bitlen(beta_q)
    return L, ((np.int64(1) << (L + 15)) + beta_q) // (2 * beta_q)


@njit(cache=True, nogil=True)
def requant_layer(acc, m, b, sh, beta, fb, lo, hi, y, i0, i1):
    """Layer requantisation with the per-sample multiplier of section 11.

    ``acc`` int64 ``(n_acc, N, C, P)`` (``|acc| <= 2^39``); ``m`` int64 ``(C, n_acc)``;
    ``b``, ``sh`` int64 ``(C,)``; ``beta`` int64 ``(N,)`` (all 1 with ``fb = 0`` for a
    node without ``beta_from``); ``y`` int16 ``(N, C, P)``. Per sample ``n``:
    ``M_n = (M * beta[n] + h) >> fb`` (``h = 2^(fb-1)``, 0 if ``fb = 0``), then
    ``y = clamp((sum_k M_n[k] acc_k + B + 2^(sh-1)) >> sh, lo, hi)``. Bounds:
    ``M_n < 2^16`` (the exporter's cap), so ``|t| < 2^57``.
    """
    n_acc, nb, c_out, npos = acc.shape
    h = _half(fb)
    for nc in range(i0, i1):
        n = nc // c_out
        c = nc % c_out
        s = sh[c]
        rnd = _half(s)
        m0 = (m[c, 0] * beta[n] + h) >> fb
        if n_acc == 1:
            for p in range(npos):
                y[n, c, p] = _rq(m0 * acc[0, n, c, p] + b[c], rnd, s, lo, hi)
        else:
            m1 = (m[c, 1] * beta[n] + h) >> fb
            for p in range(npos):
                y[n, c, p] = _rq(m0 * acc[0, n, c, p] + m1 * acc[1, n, c, p] + b[c], rnd, s, lo, hi)


@njit(cache=True, nogil=True)
def add2(a, b, m0, m1, bias, sh, lo, hi, z, i0, i1):
    """Residual addition (section 12): ``z = clamp((m0 a + m1 b + bias + 2^(sh-1)) >> sh, lo, hi)``.

    ``a``, ``b`` int16 ``(N, P)`` wide codes; ``z`` int16 ``(N, P)``. ``|m a| < 2^31``,
    ``|bias| < 2^47``.
    """
    nb, npos = a.shape
    rnd = _half(sh)
    for n in range(i0, i1):
        for p in range(npos):
            t = m0 * np.int64(a[n, p]) + m1 * np.int64(b[n, p]) + bias
            z[n, p] = _rq(t, rnd, sh, lo, hi)


@njit(cache=True, nogil=True)
def maxpool(x, kh, kw, st, pad, out, i0, i1):
    """Max over each window; padding positions are not part of the window (section 12).

    ``x`` int16 ``(N, C, H, W)``, ``out`` int16 ``(N, C, H_o, W_o)``; ``pad < kh, kw`` so
    every window holds at least one input position.
    """
    nb, c, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    for nc in range(i0, i1):
        n = nc // c
        ch = nc % c
        for oy in range(ho):
            y0 = oy * st - pad
            ya, yb = max(y0, 0), min(y0 + kh, h)
            for ox in range(wo):
                x0 = ox * st - pad
                xa, xb = max(x0, 0), min(x0 + kw, w)
                v = x[n, ch, ya, xa]
                for yy in range(ya, yb):
                    for xx in range(xa, xb):
                        if x[n, ch, yy, xx] > v:
                            v = x[n, ch, yy, xx]
                out[n, ch, oy, ox] = v


@njit(cache=True, nogil=True)
def avgpool(x, kh, kw, st, m, sh, lo, hi, out, i0, i1):
    """Average pool (section 12): the exact window sum ``S``, then ``requant(S, m, 0, sh, lo, hi)``.

    ``x`` int16 ``(N, C, H, W)`` (no padding), ``out`` int16 ``(N, C, H_o, W_o)``;
    ``|S| <= 2^15 * kh * kw <= 2^39``, so ``|m S| < 2^55``.
    """
    nb, c, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    rnd = _half(sh)
    for nc in range(i0, i1):
        n = nc // c
        ch = nc % c
        for oy in range(ho):
            for ox in range(wo):
                s = np.int64(0)
                for yy in range(oy * st, oy * st + kh):
                    for xx in range(ox * st, ox * st + kw):
                        s += x[n, ch, yy, xx]
                out[n, ch, oy, ox] = _rq(m * s, rnd, sh, lo, hi)


@njit(cache=True, nogil=True)
def pool_sums(z, out, i0, i1):
    """Adapter pool (section 13 step 1): ``out[n, c] = sum_p z[n, c, p]``, exact in int64."""
    nb, c, npos = z.shape
    for nc in range(i0, i1):
        n = nc // c
        ch = nc % c
        s = np.int64(0)
        for p in range(npos):
            s += z[n, ch, p]
        out[n, ch] = s


@njit(cache=True)
def requant_scalar(t, m, sh, lo, hi, out):
    """``out[i] = requant(t[i], m, 0, sh, lo, hi)`` for int64 ``t`` (``|m t| < 2^56``)."""
    rnd = _half(sh)
    for i in range(t.shape[0]):
        out[i] = _rq(m * t[i], rnd, sh, lo, hi)


@njit(cache=True, nogil=True)
def quant(z, beta, g, fb, qp, out, i0, i1):
    """The ``quant`` node (section 14): wide codes ``z`` int16 ``(N, P)`` to codes ``out`` int16.

    ``beta`` int64 ``(N,)`` holds ``beta_q >= 1`` per sample, or is empty for a quantiser
    without an adapter (then ``A = requant(z, 1, 0, g, 0, qp)``). With an adapter
    ``L = bitlen(beta_q)``, ``R = (2^(L+15) + beta_q) // (2 beta_q)``, ``sh = L + 14 + g - fb``,
    ``A = requant(z, R, 0, sh, 0, qp)``; ``R <= 2^15`` and ``0 <= z < 2^15``.
    """
    nb, npos = z.shape
    for n in range(i0, i1):
        if beta.shape[0] == 0:
            r, s = np.int64(1), np.int64(g)
        else:
            L, r = reciprocal(beta[n])
            s = np.int64(L + 14 + g - fb)
        rnd = _half(s)
        for p in range(npos):
            out[n, p] = _rq(r * np.int64(z[n, p]), rnd, s, 0, qp)
