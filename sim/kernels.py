"""Numba kernels: exact integer convolution, im2col, GEMM-result accumulation, wrap, requantisation.

All kernels are typed by their arguments, compiled once and cached on disk
(``cache=True``). The exact kernel, ``requant_kernel`` and the weight-side kernels
run parallel loops (``prange``) over output channels or rows; the GEMM-path
kernels around the BLAS calls (``im2col``, ``accumulate``, ``unpack_add``,
``store_pair``) are serial, release the GIL and take a row range, so that
``sim.layers`` can run one share of a layer per Python thread.
Integer arithmetic is int64 and wraps modulo ``2^64``, which is consistent with
the accumulator wrap modulo ``2^n`` (``n <= 40``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["conv_exact", "im2col", "weight_matrix", "term_l1", "position_bounds", "accumulate", "wrap_inplace",
           "requant_kernel", "chunk_ends", "unpack_add", "store_pair", "chunk_ends_packed"]


@njit(cache=True, inline="always")
def _wrap(v, half, mask):
    return ((v + half) & mask) - half


@njit(cache=True, parallel=True)
def conv_exact(x, w, tab, a0, w0, stride, pad, groups, out):
    """Direct convolution by table look-up: ``out[k, n, c, oy, ox] += tab[k, code - w0, A - a0]``.

    ``x`` int16 ``(N, C_in, H, W)``; ``w`` int16 ``(C, C_in/G, K_h, K_w)``;
    ``tab`` int64 ``(n_acc, n_w, n_a)``; ``out`` int64 ``(n_acc, N, C, H_o, W_o)``,
    zeroed by the caller. Padding positions contribute nothing (code 0 gives 0).
    """
    n_acc = tab.shape[0]
    nb, _, h, wd = x.shape
    c_out, cg_in, kh, kw = w.shape
    ho, wo = out.shape[3], out.shape[4]
    cg_out = c_out // groups
    for nc in prange(nb * c_out):
        n = nc // c_out
        c = nc % c_out
        g = c // cg_out
        acc = np.zeros((n_acc, ho, wo), np.int64)
        for j in range(cg_in):
            ci = g * cg_in + j
            for ky in range(kh):
                for kx in range(kw):
                    wi = w[c, j, ky, kx] - w0
                    for k in range(n_acc):
                        row = tab[k, wi]
                        for oy in range(ho):
                            iy = oy * stride - pad + ky
                            if iy < 0 or iy >= h:
                                continue
                            for ox in range(wo):
                                ix = ox * stride - pad + kx
                                if ix >= 0 and ix < wd:
                                    acc[k, oy, ox] += row[x[n, ci, iy, ix] - a0]
        for k in range(n_acc):
            for oy in range(ho):
                for ox in range(wo):
                    out[k, n, c, oy, ox] = acc[k, oy, ox]


@njit(cache=True, nogil=True)
def im2col(x, g_tab, a0, g, n0, cg_in, kh, kw, stride, pad, ho, wo, col, row0, row1):
    """Transformed im2col of group ``g``: ``col[i*n_t + t, (n - n0)*H_o*W_o + p] = g_tab[t, A - a0]``.

    ``x`` is C-contiguous ``(N, C_in, H, W)``. Fan-in position
    ``i = (j*K_h + ky)*K_w + kx``, term ``t``, column ``(n, oy, ox)`` for the images
    ``n0 .. n0 + col.shape[1] / (H_o*W_o) - 1``. Positions in the zero padding
    are 0 (every ``g`` maps code 0 to 0). Writes the rows ``row0 .. row1 - 1`` only,
    on the calling thread with the GIL released (the caller splits rows between threads).
    """
    n_t = g_tab.shape[0]
    c_in, h, wd = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    npos = ho * wo
    nb = col.shape[1] // npos
    zero = col.dtype.type(0)
    identity = n_t == 1
    for a in range(g_tab.shape[1]):
        if g_tab[0, a] != a + a0:
            identity = False
    for row in range(row0, row1):
        r = row // n_t
        t = row % n_t
        j = r // (kh * kw)
        ky = (r // kw) % kh
        kx = r % kw
        ci = g * cg_in + j
        dst = col[row]
        gt = g_tab[t]
        # output columns whose input column ix = ox*stride - pad + kx lies inside 0 .. W-1
        ox_lo = min(wo, max(0, (pad - kx + stride - 1) // stride))
        ox_hi = max(ox_lo, min(wo, (wd - 1 + pad - kx) // stride + 1))
        cnt = ox_hi - ox_lo
        for nn in range(nb):
            plane = ((n0 + nn) * c_in + ci) * h
            base = nn * npos
            for oy in range(ho):
                iy = oy * stride - pad + ky
                o = base + oy * wo
                if iy < 0 or iy >= h:
                    for ox in range(wo):
                        dst[o + ox] = zero
                    continue
                for ox in range(ox_lo):
                    dst[o + ox] = zero
                src = (plane + iy) * wd + ox_lo * stride - pad + kx
                d = o + ox_lo
                if cnt == 0:
                    pass
                elif identity and stride == 1:
                    ud, us = np.uint64(d), np.uint64(src)
                    for q in range(np.uint64(cnt)):          # unsigned indices: no wraparound checks
                        dst[ud + q] = xf[us + q]
                elif identity:
                    ud, us, ust = np.uint64(d), np.uint64(src), np.uint64(stride)
                    for q in range(np.uint64(cnt)):
                        dst[ud + q] = xf[us + q * ust]
                else:
                    for q in range(cnt):                     # unsigned indices: no wraparound checks
                        dst[np.uint64(d + q)] = gt[np.uint64(xf[np.uint64(src + q * stride)] - a0)]
                for ox in range(ox_hi, wo):
                    dst[o + ox] = zero


@njit(cache=True, parallel=True)
def weight_matrix(codes, vals, out):
    """GEMM weights of one group: ``out[k*C_g + c, i*n_t + t] = vals[t, k, codes[c, i]]``.

    ``codes`` (C_g, K) weight-code indices; ``vals`` (n_t, n_acc, n_w) per-code values.
    """
    n_t, n_acc, _ = vals.shape
    cg, kk = codes.shape
    for row in prange(n_acc * cg):
        k = row // cg
        c = row % cg
        for i in range(kk):
            wi = codes[c, i]
            for t in range(n_t):
                out[row, i * n_t + t] = vals[t, k, wi]


@njit(cache=True, parallel=True)
def term_l1(codes, vabs, out):
    """Per-term L1 norms of the integer weights: ``out[t, k*C_g + c] = sum_i vabs[t, k, codes[c, i]]``.

    Sums saturate at ``2^62`` (any bound that large fails every exactness test anyway).
    """
    n_t, n_acc, _ = vabs.shape
    cg, kk = codes.shape
    cap = np.int64(1) << 62
    for row in prange(n_acc * cg):
        k = row // cg
        c = row % cg
        for t in range(n_t):
            s = np.int64(0)
            for i in range(kk):
                s += vabs[t, k, codes[c, i]]
                if s > cap:
                    s = cap
            out[t, row] = s


@njit(cache=True, parallel=True)
def position_bounds(codes, cost, out):
    """Bound of one fan-in position: ``out[i, k*C_g + c] = cost[k, codes[c, i]]``."""
    n_acc = cost.shape[0]
    cg, kk = codes.shape
    for i in prange(kk):
        for k in range(n_acc):
            for c in range(cg):
                out[i, k * cg + c] = cost[k, codes[c, i]]


@njit(cache=True, nogil=True)
def accumulate(res, out, g, cg_out, n0, first, last, nbits, row0, col0):
    """Add GEMM chunk results ``res[j]`` (rows ``row - row0``, columns ``q - col0``) to ``out``.

    GEMM row ``row = k*cg_out + c``, column ``q = (n - n0)*P + p``:
    ``out[k, n, g*cg_out + c, p] (+)= sum_j res[j, row - row0, q - col0]`` for the rows
    ``row0 ..`` and columns ``col0 ..`` that ``res`` covers. ``first`` overwrites
    instead of adding, ``last`` wraps the result to ``nbits``. ``res`` holds exact
    integers (float), converted exactly and added in int64. Runs on the calling
    thread with the GIL released.
    """
    n_ch = res.shape[0]
    ncol = res.shape[2]
    npos = out.shape[3]
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    for r in range(res.shape[1]):
        row = row0 + r
        k = row // cg_out
        c = g * cg_out + row % cg_out
        q = 0
        while q < ncol:                                  # one image's segment of the columns at a time
            nn = (col0 + q) // npos
            p0 = col0 + q - nn * npos
            cnt = min(npos - p0, ncol - q)
            oo = out[k, n0 + nn, c, p0:p0 + cnt]
            for j in range(n_ch):
                rr = res[j, r, q:q + cnt]
                add = j > 0 or not first
                wrap = last and j == n_ch - 1
                for t in range(cnt):
                    v = np.int64(rr[t])
                    if add:
                        v += oo[t]
                    if wrap:
                        v = _wrap(v, half, mask)
                    oo[t] = v
            q += cnt


@njit(cache=True, nogil=True)
def unpack_add(res, acc0, acc1, bits, first):
    """Split packed ``split`` chunk results ``res[j] = S0 + 2^bits * S1`` (``|S0| < 2^(bits-1)``) and add them.

    ``acc0 (+)= sum_j S0_j``, ``acc1 (+)= sum_j S1_j``, all in the float type of
    ``res``: ``S1 = round(res * 2^-bits)`` (no tie is possible; rounded by adding and
    subtracting ``1.5 * 2^23``, exact as ``|res * 2^-bits| < 2^22``), ``S0 = res - S1 * 2^bits``;
    every value is an integer whose magnitude the caller has bounded by the
    float's exact-integer range, so each operation is exact. ``first`` overwrites.
    Runs on the calling thread with the GIL released.
    """
    n_ch, rows, m = res.shape
    scale = res.dtype.type(2.0**bits)
    inv = res.dtype.type(2.0**-bits)
    # adding and subtracting 1.5 * 2^(p-1) rounds |v| < 2^(p-2) to the nearest integer (p = mantissa bits)
    magic = res.dtype.type(1.5 * 2.0 ** (np.finfo(res.dtype).nmant))
    for row in range(rows):
        a0 = acc0[row]
        a1 = acc1[row]
        for j in range(n_ch):
            rr = res[j, row]
            if j == 0 and first:
                for p in range(m):
                    r = rr[p]
                    s1 = (r * inv + magic) - magic
                    a0[p] = r - s1 * scale
                    a1[p] = s1
            else:
                for p in range(m):
                    r = rr[p]
                    s1 = (r * inv + magic) - magic
                    a0[p] += r - s1 * scale
                    a1[p] += s1


@njit(cache=True, nogil=True)
def store_pair(acc0, acc1, out, g, cg_out, n0, nbits, row0, col0):
    """``out[k, n, g*cg_out + c, p] = wrap(acc_k[c - row0, q - col0], nbits)``, ``q = (n - n0)*P + p``.

    Stores the two float sums of the channels ``row0 ..`` and columns ``col0 ..``
    that ``acc0``, ``acc1`` cover, on the calling thread with the GIL released.
    """
    npos = out.shape[3]
    ncol = acc0.shape[1]
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    for row in range(acc0.shape[0]):
        c = g * cg_out + row0 + row
        q = 0
        while q < ncol:
            nn = (col0 + q) // npos
            p0 = col0 + q - nn * npos
            cnt = min(npos - p0, ncol - q)
            o0 = out[0, n0 + nn, c]
            o1 = out[1, n0 + nn, c]
            for t in range(cnt):
                o0[p0 + t] = _wrap(np.int64(acc0[row, q + t]), half, mask)
                o1[p0 + t] = _wrap(np.int64(acc1[row, q + t]), half, mask)
            q += cnt


@njit(cache=True)
def chunk_ends_packed(b0, b1, lim0, scale, limit):
    """Greedy fan-in split for a packed pair of sums ``S0 + scale * S1``.

    ``b0``, ``b1`` int64 ``(K, rows)`` bound the magnitudes of the two sums' terms.
    Every chunk keeps, for every row, ``sum b0 <= lim0`` and
    ``sum b0 + scale * sum b1 <= limit``. Returns the chunk end indices, or an
    empty array if a single position breaks a limit.
    """
    kk, rows = b0.shape
    r0 = np.zeros(rows, np.int64)
    r1 = np.zeros(rows, np.int64)
    ends = []
    for i in range(kk):
        for r in range(rows):
            if b0[i, r] > lim0 or b0[i, r] + scale * b1[i, r] > limit:
                return np.zeros(0, np.int64)
        fits = True
        for r in range(rows):
            s0 = r0[r] + b0[i, r]
            if s0 > lim0 or s0 + scale * (r1[r] + b1[i, r]) > limit:
                fits = False
                break
        if not fits:
            ends.append(i)
            r0[:] = 0
            r1[:] = 0
        for r in range(rows):
            r0[r] += b0[i, r]
            r1[r] += b1[i, r]
    ends.append(kk)
    return np.array(ends, dtype=np.int64)


@njit(cache=True, parallel=True)
def wrap_inplace(a, nbits):
    """Wrap every element of the flat int64 array ``a`` to ``nbits``-bit two's complement."""
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    for i in prange(a.size):
        a[i] = _wrap(a[i], half, mask)


@njit(cache=True, parallel=True)
def requant_kernel(acc, m, b, sh, lo, hi, y):
    """``y[n, c, p] = clamp(round_half_up((sum_k M[c,k]*acc[k,n,c,p] + B[c]) / 2^sh[c]), lo, hi)``."""
    n_acc, nb, c_out, npos = acc.shape
    for nc in prange(nb * c_out):
        n = nc // c_out
        c = nc % c_out
        s = sh[c]
        rnd = (np.int64(1) << (s - 1)) if s >= 1 else np.int64(0)
        for p in range(npos):
            t = b[c]
            for k in range(n_acc):
                t += m[c, k] * acc[k, n, c, p]
            r = (t + rnd) >> s
            if r < lo:
                r = lo
            elif r > hi:
                r = hi
            y[n, c, p] = r


@njit(cache=True)
def chunk_ends(bound_t, limit):
    """Greedy split of the fan-in so that every row's bound stays within ``limit`` per chunk.

    ``bound_t`` int64 ``(K, rows)`` holds, per fan-in position and output row, a
    bound on the magnitude of that term (each at most ``limit``). Returns the
    chunk end indices (the last is ``K``): for every chunk ``[s, e)`` and row
    ``r``, ``sum(bound_t[s:e, r]) <= limit``.
    """
    kk, rows = bound_t.shape
    run = np.zeros(rows, np.int64)
    ends = []
    for i in range(kk):
        fits = True
        for r in range(rows):
            if run[r] + bound_t[i, r] > limit:
                fits = False
                break
        if not fits:
            ends.append(i)
            run[:] = 0
        for r in range(rows):
            run[r] += bound_t[i, r]
    ends.append(kk)
    return np.array(ends, dtype=np.int64)
