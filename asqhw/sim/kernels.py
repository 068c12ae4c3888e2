"""Numba kernels: exact integer convolution, im2col, GEMM-result accumulation, wrap, requantisation.

All kernels are typed by their arguments, compiled once and cached on disk
(``cache=True``). ``wrap_inplace`` and ``requant_kernel`` run parallel loops
(``prange``); the exact kernel and the integer GEMM path (``conv_exact``,
``im2row_i16``, ``gemm_i16``) are serial, release the GIL and take a range of
channels, rows or tiles, and ``sim.workshare`` runs one range per Python thread (no
parallel region to compile: their first call from an empty cache takes about half
the time); the weight-side kernels (``weight_matrix``,
``term_l1``, ``position_bounds``, run once per layer) are serial, which halves their
compile time from an empty cache; the GEMM-path
kernels around the BLAS calls (``im2col``, ``accumulate``, ``unpack_add``,
``store_pair``) are serial, release the GIL and take a row range, so that
``sim.gemm_path`` can run one share of a layer per Python thread.
Sums that may exceed the int64 range for legal layers (the exact kernel's table
look-ups, the int64 chunk adder, every wrap) are done in uint64, where wrapping
modulo ``2^64`` is defined (numba marks signed additions no-signed-wrap, so LLVM may
assume they never overflow); the reduction modulo ``2^64`` is consistent with the
accumulator wrap modulo ``2^n`` (``n <= 40``).
"""

# numba's cache keys an entry by this file's size and time stamp and imports the module the
# entry names: this edit (for the move to asqhw.sim) invalidates entries compiled under the
# old top-level name 'sim'.


from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["conv_exact", "im2col", "weight_matrix", "term_l1", "position_bounds", "accumulate", "wrap_inplace",
           "requant_kernel", "chunk_ends", "unpack_add", "store_pair", "chunk_ends_packed", "im2row_i16",
           "gemm_i16"]


@njit(cache=True, inline="always")
def _wrap(v, half, mask):
    """``v`` (int64) reduced to ``nbits``-bit two's complement, ``half = 2^(nbits-1)``, ``mask = 2^nbits - 1``.

    Computed in uint64 (wraps modulo ``2^64`` by definition) so that no signed addition
    can overflow; the result is at most ``2^39`` in magnitude.
    """
    return np.int64((np.uint64(v) + np.uint64(half)) & np.uint64(mask)) - half


@njit(cache=True, nogil=True)
def conv_exact(x, w, tab, a0, w0, stride, pad, groups, nbits, out, nc0, nc1):
    """Direct convolution by table look-up: ``out[k, n, c, oy, ox] = wrap(sum tab[k, code - w0, A - a0], nbits)``.

    ``x`` int16 ``(N, C_in, H, W)``; ``w`` int16 ``(C, C_in/G, K_h, K_w)``;
    ``tab`` uint64 ``(n_acc, n_w, n_a)`` (the products modulo ``2^64``); ``out`` int64
    ``(n_acc, N, C, H_o, W_o)``. The sums are taken modulo ``2^64`` (uint64) and wrapped
    to ``nbits`` on the store. Padding positions contribute nothing (code 0 gives 0).
    Computes the ``(n, c)`` pairs ``nc = n*C + c`` in ``nc0 .. nc1 - 1`` on the calling
    thread with the GIL released (``sim.workshare`` runs one range per thread).
    """
    n_acc = tab.shape[0]
    nb, _, h, wd = x.shape
    c_out, cg_in, kh, kw = w.shape
    ho, wo = out.shape[3], out.shape[4]
    cg_out = c_out // groups
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    for nc in range(nc0, nc1):
        n = nc // c_out
        c = nc % c_out
        g = c // cg_out
        acc = np.zeros((n_acc, ho, wo), np.uint64)
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
                    out[k, n, c, oy, ox] = _wrap(np.int64(acc[k, oy, ox]), half, mask)


@njit(cache=True, nogil=True)
def im2col(x, g_tab, a0, g, n0, cg_in, kh, kw, stride, pad, ho, wo, col, row0, row1):
    """Transformed im2col of group ``g``: ``col[i*n_t + t, (n - n0)*H_o*W_o + p] = g_tab[t, A - a0]``.

    ``x`` is C-contiguous ``(N, C_in, H, W)``. Fan-in position
    ``i = (j*K_h + ky)*K_w + kx``, term ``t``, column ``(n, oy, ox)`` for the images
    ``n0 .. n0 + col.shape[1] / (H_o*W_o) - 1``. Positions in the zero padding
    are 0 (every ``g`` maps code 0 to 0; a centred term ``A - c`` is 0 there too). When
    ``g_tab`` is a single shifted identity, ``g(A) = A - c``, the values are copied and
    shifted instead of looked up. Writes the rows ``row0 .. row1 - 1`` only,
    on the calling thread with the GIL released (the caller splits rows between threads).
    """
    n_t = g_tab.shape[0]
    c_in, h, wd = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    npos = ho * wo
    nb = col.shape[1] // npos
    zero = col.dtype.type(0)
    shift = g_tab[0, 0] - np.float32(a0)             # g(A) = A - c: shift = -c (|a0| <= 128: exact)
    identity = n_t == 1
    for a in range(g_tab.shape[1]):
        if g_tab[0, a] != a + a0 + shift:
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
                elif identity and stride == 1 and shift == 0:
                    ud, us = np.uint64(d), np.uint64(src)
                    for q in range(np.uint64(cnt)):          # unsigned indices: no wraparound checks
                        dst[ud + q] = xf[us + q]
                elif identity and shift == 0:
                    ud, us, ust = np.uint64(d), np.uint64(src), np.uint64(stride)
                    for q in range(np.uint64(cnt)):
                        dst[ud + q] = xf[us + q * ust]
                elif identity:
                    ud, us, ust = np.uint64(d), np.uint64(src), np.uint64(stride)
                    for q in range(np.uint64(cnt)):          # centred: A - c, in the float type of g_tab
                        dst[ud + q] = xf[us + q * ust] + shift
                else:
                    for q in range(cnt):                     # unsigned indices: no wraparound checks
                        dst[np.uint64(d + q)] = gt[np.uint64(xf[np.uint64(src + q * stride)] - a0)]
                for ox in range(ox_hi, wo):
                    dst[o + ox] = zero


@njit(cache=True, nogil=True)
def weight_matrix(codes, vals, out):
    """GEMM weights of one group: ``out[k*C_g + c, i*n_t + t] = vals[t, k, codes[c, i]]``.

    ``codes`` (C_g, K) weight-code indices; ``vals`` (n_t, n_acc, n_w) per-code values.
    """
    n_t, n_acc, _ = vals.shape
    cg, kk = codes.shape
    for row in range(n_acc * cg):
        k = row // cg
        c = row % cg
        for i in range(kk):
            wi = codes[c, i]
            for t in range(n_t):
                out[row, i * n_t + t] = vals[t, k, wi]


@njit(cache=True, nogil=True)
def term_l1(codes, vabs, out):
    """Per-term L1 norms of the integer weights: ``out[t, k*C_g + c] = sum_i vabs[t, k, codes[c, i]]``.

    Sums saturate at ``2^62`` (any bound that large fails every exactness test anyway).
    """
    n_t, n_acc, _ = vabs.shape
    cg, kk = codes.shape
    cap = np.int64(1) << 62
    for row in range(n_acc * cg):
        k = row // cg
        c = row % cg
        for t in range(n_t):
            s = np.int64(0)
            for i in range(kk):
                s += vabs[t, k, codes[c, i]]
                if s > cap:
                    s = cap
            out[t, row] = s


@njit(cache=True, nogil=True)
def position_bounds(codes, cost, out):
    """Bound of one fan-in position: ``out[i, k*C_g + c] = cost[k, codes[c, i]]``."""
    n_acc = cost.shape[0]
    cg, kk = codes.shape
    for i in range(kk):
        for k in range(n_acc):
            for c in range(cg):
                out[i, k * cg + c] = cost[k, codes[c, i]]


@njit(cache=True, nogil=True)
def accumulate(res, out, g, cg_out, n0, first, last, nbits, row0, col0, corr):
    """Add GEMM chunk results ``res[j]`` (rows ``row - row0``, columns ``q - col0``) to ``out``.

    GEMM row ``row = k*cg_out + c``, column ``q = (n - n0)*P + p``:
    ``out[k, n, g*cg_out + c, p] (+)= sum_j res[j, row - row0, q - col0]`` for the rows
    ``row0 ..`` and columns ``col0 ..`` that ``res`` covers. ``first`` overwrites
    instead of adding, ``last`` wraps the result to ``nbits``, after adding
    ``corr[k, g*cg_out + c, p]`` (uint64, modulo ``2^64``: the correction of centred
    activations, docs/sim.md) when ``corr`` is not empty. ``res`` holds exact
    integers (float), converted exactly and added modulo ``2^64``. Runs on the calling
    thread with the GIL released.
    """
    centred = corr.size > 0
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
                    v = np.int64(rr[t])                  # an exact integer, |v| <= 2^53
                    if add:                              # modulo 2^64, in uint64 (defined wrap)
                        v = np.int64(np.uint64(v) + np.uint64(oo[t]))
                    if wrap:
                        if centred:
                            v = np.int64(np.uint64(v) + corr[k, c, p0 + t])
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
def store_pair(acc0, acc1, out, g, cg_out, n0, nbits, row0, col0, corr):
    """``out[k, n, g*cg_out + c, p] = wrap(acc_k[c - row0, q - col0] + corr[k, c, p], nbits)``, ``q = (n - n0)*P + p``.

    Stores the two float sums of the channels ``row0 ..`` and columns ``col0 ..``
    that ``acc0``, ``acc1`` cover, on the calling thread with the GIL released. ``corr``
    (uint64, added modulo ``2^64``) is the correction of centred activations; empty: none.
    """
    centred = corr.size > 0
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
            if centred:
                c0 = corr[0, c]
                c1 = corr[1, c]
                for t in range(cnt):
                    o0[p0 + t] = _wrap(np.int64(np.uint64(np.int64(acc0[row, q + t])) + c0[p0 + t]), half, mask)
                    o1[p0 + t] = _wrap(np.int64(np.uint64(np.int64(acc1[row, q + t])) + c1[p0 + t]), half, mask)
            else:
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
    """Wrap every element of the flat int64 (or uint64) array ``a`` to ``nbits``-bit two's complement.

    A uint64 array holds values modulo ``2^64``; its elements are stored back as the
    bits of the signed result (view the array as int64 afterwards).
    """
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    for i in prange(a.size):
        a[i] = _wrap(np.int64(a[i]), half, mask)


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


@njit(cache=True, nogil=True)
def im2row_i16(x, g16, a0, g, n0, cg_in, kh, kw, stride, pad, ho, wo, col, r0, r1):
    """Transformed im2col of group ``g``, one row per output position: ``col[q, i*n_t + t] = g16[t, A - a0]``.

    ``x`` is C-contiguous ``(N, C_in, H, W)``. Row ``q = (n - n0)*H_o*W_o + oy*W_o + ox``
    for the output rows ``(n - n0)*H_o + oy`` in ``r0 .. r1 - 1``; fan-in position
    ``i = (j*K_h + ky)*K_w + kx``. Padding positions and the columns ``K*n_t ..``
    (fan-in padding) are 0; the rows after the last output row (the register-block
    remainder) are zeroed by the caller.
    ``col`` is ``(Q, >= K*n_t)`` of an integer type that holds every used ``g16`` entry;
    ``g16`` ``(n_t, n_a)``. Each output row writes a block of ``W_o`` rows of ``col``,
    which stays in the L1/L2 cache; runs on the calling thread with the GIL released.
    """
    n_t = g16.shape[0]
    c_in, h, wd = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    cf = col.reshape(-1)
    kt = np.uint64(col.shape[1])
    identity = n_t == 1
    for a in range(g16.shape[1]):
        if g16[0, a] != a + a0:
            identity = False
    # output columns whose input column ix = ox*stride - pad + kx lies inside 0 .. W-1, per kx
    lo_kx = np.empty(kw, np.int64)
    hi_kx = np.empty(kw, np.int64)
    for kx in range(kw):
        lo_kx[kx] = min(wo, max(0, (pad - kx + stride - 1) // stride))
        hi_kx[kx] = max(lo_kx[kx], min(wo, (wd - 1 + pad - kx) // stride + 1))
    for r in range(r0, r1):
        n = n0 + r // ho
        oy = r % ho
        q0 = np.uint64(r * wo)
        for ox in range(np.uint64(wo)):
            for i in range(np.uint64(cg_in * kh * kw * n_t), kt):
                cf[(q0 + ox) * kt + i] = 0
        for j in range(cg_in):
            plane = (n * c_in + g * cg_in + j) * h
            for ky in range(kh):
                iy = oy * stride - pad + ky
                for kx in range(kw):
                    i0 = np.uint64(((j * kh + ky) * kw + kx) * n_t)
                    if iy < 0 or iy >= h:
                        for ox in range(np.uint64(wo)):
                            for t in range(np.uint64(n_t)):
                                cf[(q0 + ox) * kt + i0 + t] = 0
                        continue
                    ox_lo = lo_kx[kx]
                    ox_hi = hi_kx[kx]
                    for ox in range(np.uint64(ox_lo)):
                        for t in range(np.uint64(n_t)):
                            cf[(q0 + ox) * kt + i0 + t] = 0
                    for ox in range(np.uint64(ox_hi), np.uint64(wo)):
                        for t in range(np.uint64(n_t)):
                            cf[(q0 + ox) * kt + i0 + t] = 0
                    src = np.uint64((plane + iy) * wd - pad + kx)     # + ox*stride >= 0 for ox >= ox_lo
                    st = np.uint64(stride)
                    if identity:
                        d = (q0 + np.uint64(ox_lo)) * kt + i0
                        sx = src + np.uint64(ox_lo) * st
                        for _ in range(np.uint64(ox_hi - ox_lo)):
                            cf[d] = xf[sx]
                            d += kt
                            sx += st
                    else:
                        for ox in range(np.uint64(ox_lo), np.uint64(ox_hi)):
                            av = np.uint64(xf[src + ox * st] - a0)
                            d = (q0 + ox) * kt + i0
                            for t in range(np.uint64(n_t)):
                                cf[d + t] = g16[t, av]


@njit(cache=True, inline="always")
def _row_offset(row, rows, cg_out, g, kstride, npos):
    """Flat offset of output row ``row = k*cg_out + c`` in ``out`` (n = 0, p = 0), -1 for padding rows."""
    if row >= rows:
        return -1
    return (row // cg_out) * kstride + (g * cg_out + row % cg_out) * npos


@njit(cache=True, inline="always")
def _col_offset(q, nq, n0, npos, plane):
    """Flat offset of GEMM column ``q = (n - n0)*P + p`` in ``out`` (k = 0, c = 0), -1 for padding columns."""
    if q >= nq:
        return -1
    n = q // npos
    return (n0 + n) * plane + q - n * npos


@njit(cache=True, inline="always")
def _put(of, o, e, s, half, mask):
    if o >= 0 and e >= 0:
        of[o + e] = _wrap(np.int64(s), half, mask)


@njit(cache=True, nogil=True)
def gemm_i16(wt, col, nq, qb, out, g, cg_out, n0, nbits, t0, t1):
    """Integer GEMM, int32 sums, stored wrapped: ``out[k, n, g*cg_out + c, p] = wrap(sum_i wt[r, i] * col[q, i])``.

    ``wt`` int8 or int16 ``(R4, K)`` (row ``r = k*cg_out + c``; rows ``n_acc*cg_out ..`` are
    zero padding to a multiple of 4), ``col`` uint8, int8 or int16 ``(Q4, K)`` (row
    ``q = (n - n0)*P + p``; rows ``nq ..`` are padding); ``out`` C-contiguous int64
    ``(n_acc, N, C, P)``. 4x4 register blocks; every step is cast back to
    int32 so that LLVM emits 16-bit dot-product instructions. The caller proves
    ``sum_i |wt[r, i] * col[q, i]| < 2^31`` for every row (docs/sim.md), which makes
    the int32 sum exact in any order. Computes the tiles ``t0 .. t1 - 1`` of ``qb``
    positions (a multiple of 4) times 4 rows, tile ``t = (q // qb) * (R4 / 4) + r // 4``,
    on the calling thread with the GIL released.
    """
    r4, kk = wt.shape
    q4 = col.shape[0]
    rows = out.shape[0] * cg_out
    npos = out.shape[3]
    plane = out.shape[2] * npos
    kstride = out.shape[1] * plane
    of = out.reshape(-1)
    half = np.int64(1) << (nbits - 1)
    mask = (np.int64(1) << nbits) - 1
    n_rb = r4 // 4
    n_qb = (q4 + qb - 1) // qb
    for tile in range(t0, t1):
        qi = tile // n_rb
        c = (tile % n_rb) * 4
        o0 = _row_offset(c, rows, cg_out, g, kstride, npos)
        o1 = _row_offset(c + 1, rows, cg_out, g, kstride, npos)
        o2 = _row_offset(c + 2, rows, cg_out, g, kstride, npos)
        o3 = _row_offset(c + 3, rows, cg_out, g, kstride, npos)
        for p0 in range(qi * qb, min(q4, qi * qb + qb), 4):
            e0 = _col_offset(p0, nq, n0, npos, plane)
            e1 = _col_offset(p0 + 1, nq, n0, npos, plane)
            e2 = _col_offset(p0 + 2, nq, n0, npos, plane)
            e3 = _col_offset(p0 + 3, nq, n0, npos, plane)
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.int32(0)
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.int32(0)
            for k in range(kk):
                a0 = np.int32(col[p0, k])
                a1 = np.int32(col[p0 + 1, k])
                a2 = np.int32(col[p0 + 2, k])
                a3 = np.int32(col[p0 + 3, k])
                w0 = np.int32(wt[c, k])
                w1 = np.int32(wt[c + 1, k])
                w2 = np.int32(wt[c + 2, k])
                w3 = np.int32(wt[c + 3, k])
                s00 = np.int32(s00 + a0 * w0)
                s01 = np.int32(s01 + a1 * w0)
                s02 = np.int32(s02 + a2 * w0)
                s03 = np.int32(s03 + a3 * w0)
                s10 = np.int32(s10 + a0 * w1)
                s11 = np.int32(s11 + a1 * w1)
                s12 = np.int32(s12 + a2 * w1)
                s13 = np.int32(s13 + a3 * w1)
                s20 = np.int32(s20 + a0 * w2)
                s21 = np.int32(s21 + a1 * w2)
                s22 = np.int32(s22 + a2 * w2)
                s23 = np.int32(s23 + a3 * w2)
                s30 = np.int32(s30 + a0 * w3)
                s31 = np.int32(s31 + a1 * w3)
                s32 = np.int32(s32 + a2 * w3)
                s33 = np.int32(s33 + a3 * w3)
            _put(of, o0, e0, s00, half, mask)
            _put(of, o0, e1, s01, half, mask)
            _put(of, o0, e2, s02, half, mask)
            _put(of, o0, e3, s03, half, mask)
            _put(of, o1, e0, s10, half, mask)
            _put(of, o1, e1, s11, half, mask)
            _put(of, o1, e2, s12, half, mask)
            _put(of, o1, e3, s13, half, mask)
            _put(of, o2, e0, s20, half, mask)
            _put(of, o2, e1, s21, half, mask)
            _put(of, o2, e2, s22, half, mask)
            _put(of, o2, e3, s23, half, mask)
            _put(of, o3, e0, s30, half, mask)
            _put(of, o3, e1, s31, half, mask)
            _put(of, o3, e2, s32, half, mask)
            _put(of, o3, e3, s33, half, mask)
