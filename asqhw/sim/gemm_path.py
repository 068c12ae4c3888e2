"""The float GEMM path of a conv layer: im2col of the activation terms, BLAS GEMMs, exact int64 sums.

Runs a :class:`sim.plan.GemmPlan` proved exact by :class:`sim.plan.GemmWeights`
(docs/sim.md, "GEMM path", "Exactness of the GEMM path", "Centred activations"): per
group and block of images ``im2col`` writes ``g_t(A)`` (or ``A - c``), one GEMM per fan-in
chunk gives every accumulator, and ``accumulate`` (or, packed, ``unpack_add`` and
``store_pair``) adds the chunks in int64, adds the centring correction and wraps.
"""

from __future__ import annotations

import threading

import numpy as np

from . import kernels, workshare
from .scratch import Scratch

__all__ = ["GemmPath", "images_per_block", "cuts", "COL_BLOCK_BYTES", "RES_BLOCK_BYTES"]

COL_BLOCK_BYTES = 8 << 20   # im2col block size: images are processed in blocks of about this many bytes
RES_BLOCK_BYTES = 1 << 20   # GEMM results gathered per accumulate call


def images_per_block(nb: int, rows: int, npos: int, itemsize: int) -> int:
    """Images per im2col block of ``rows`` rows and ``npos`` positions per image: one block near COL_BLOCK_BYTES."""
    return max(1, min(nb, COL_BLOCK_BYTES // (rows * npos * itemsize)))


def cuts(n: int, parts: int) -> list:
    """Split ``0 .. n`` into ``parts`` ranges at multiples of 8: the boundaries, ``parts + 1`` of them."""
    return [0] + [min(n, (n * t // parts + 7) // 8 * 8) for t in range(1, parts)] + [n]


class GemmPath:
    """The float GEMM path of one :class:`sim.layers.Conv2d` (its weights from ``layer.gemm_weights()``).

    Keeps the centring corrections per input geometry and the im2col buffer.
    """

    def __init__(self, layer):
        self.layer = layer
        self.scratch = Scratch()
        self._corr = {}

    def __call__(self, x, plan, ho, wo):
        """The accumulators ``(n_acc, N, C_out, H_o, W_o)`` of int16 codes ``x`` by the exact ``plan``."""
        # Work sharing (docs/sim.md, "Threads"): the layer is cut into one share per thread;
        # every share writes its own im2col rows, then computes its own slice (output rows or
        # columns) of every GEMM with single-threaded BLAS and unpacks it, all with the GIL
        # released. No thread pool ever waits (spinning) while another one runs, which had
        # made alternating numba and OpenBLAS pools up to 100x slower on this machine.
        layer = self.layer
        gw = layer.gemm_weights()
        bits = plan.pack_bits
        mats = gw.packed_matrices(bits) if bits else gw.matrices(plan.dtype)
        nb = x.shape[0]
        c_out, cg_in, kh, kw = layer.w16.shape
        n_acc, cg_out = layer.dp.n_acc, gw.cg_out
        res_rows = cg_out if bits else n_acc * cg_out
        npos = ho * wo
        out = np.empty((n_acc, nb, c_out, npos), dtype=np.int64)
        g_f = gw.g_tab.astype(plan.dtype)
        corr = np.zeros((0, 0, 0), dtype=np.uint64)
        if plan.centre:
            a0 = layer.dp.a_range[0]
            g_f[0] = np.arange(a0, a0 + g_f.shape[1]) - plan.centre      # identity term: A - centre
            corr = self.centre_correction(plan.centre, x.shape[2], x.shape[3], ho, wo)
        rows = gw.n_t * gw.k
        itemsize = np.dtype(plan.dtype).itemsize
        blk = images_per_block(nb, rows, npos, itemsize)
        n_sh = workshare.shares(res_rows * blk * npos * rows)
        col = self.scratch.get("col", plan.dtype, rows * blk * npos)
        # each share takes a slice of the larger GEMM dimension (output rows or columns),
        # cut at multiples of 8 (BLAS register blocks); its im2col slice is a range of rows
        rcuts = [rows * s // n_sh for s in range(n_sh + 1)]
        barrier = threading.Barrier(n_sh)
        n_ch = max(len(c) for c in plan.chunks)

        def share(s):
            for gi in range(layer.groups):
                ends = plan.chunks[gi]
                starts = (0,) + ends[:-1]
                for n0 in range(0, nb, blk):
                    m = min(blk, nb - n0) * npos
                    by_rows = res_rows >= m
                    cut = cuts(res_rows if by_rows else m, n_sh)
                    r0, r1 = (cut[s], cut[s + 1]) if by_rows else (0, res_rows)
                    c0, c1 = (0, m) if by_rows else (cut[s], cut[s + 1])
                    cb = col[:rows * m].reshape(rows, m)
                    barrier.wait()                      # every share is done with the previous block
                    kernels.im2col(x, g_f, layer.dp.a_range[0], gi, n0, cg_in, kh, kw, layer.stride, layer.padding,
                                   ho, wo, cb, rcuts[s], rcuts[s + 1])
                    barrier.wait()                      # the whole block is written
                    if r1 <= r0 or c1 <= c0:
                        continue
                    my, mc = r1 - r0, c1 - c0
                    per = max(1, min(n_ch, RES_BLOCK_BYTES // (my * mc * itemsize)))
                    res = np.empty(per * my * mc, dtype=plan.dtype)
                    if bits:                            # contiguous: numba vectorises only those
                        p0, p1 = np.empty((2, my, mc), dtype=plan.dtype)
                    for j0 in range(0, len(ends), per):
                        j1 = min(len(ends), j0 + per)
                        rb = res[:(j1 - j0) * my * mc].reshape(j1 - j0, my, mc)
                        for j in range(j0, j1):
                            np.matmul(mats[gi][r0:r1, starts[j]:ends[j]], cb[starts[j]:ends[j], c0:c1],
                                      out=rb[j - j0])
                        first, last = j0 == 0, j1 == len(ends)
                        if bits:
                            kernels.unpack_add(rb, p0, p1, bits, first)
                            if last:
                                kernels.store_pair(p0, p1, out, gi, cg_out, n0, layer.acc_bits, r0, c0, corr)
                        else:
                            kernels.accumulate(rb, out, gi, cg_out, n0, first, last, layer.acc_bits, r0, c0, corr)

        workshare.run_shares(share, n_sh, barrier)
        return out.reshape(n_acc, nb, c_out, ho, wo)

    def centre_correction(self, centre, h, wd, ho, wo):
        """``centre * sum of v_k over the taps of (c, oy, ox) inside the input``, uint64 ``(n_acc, C_out, P)``.

        All arithmetic is modulo ``2^64`` (numpy unsigned arrays wrap), which the final
        wrap to ``n <= 40`` bits respects; kept per geometry.
        """
        key = (centre, h, wd, ho, wo)
        if key not in self._corr:
            layer = self.layer
            gw = layer.gemm_weights()
            c_out, cg_in, kh, kw = layer.w16.shape
            codes = np.concatenate(gw.codes).reshape(c_out, cg_in, kh, kw)
            vu = gw.v[0].astype(np.uint64)                               # (n_acc, n_w), modulo 2^64
            wt = vu[:, codes].sum(axis=2, dtype=np.uint64)              # (n_acc, C_out, K_h, K_w)
            st, pad = layer.stride, layer.padding
            iy = np.arange(ho)[:, None] * st - pad + np.arange(kh)[None, :]
            ix = np.arange(wo)[:, None] * st - pad + np.arange(kw)[None, :]
            my = ((iy >= 0) & (iy < h)).astype(np.uint64)               # (H_o, K_h)
            mx = ((ix >= 0) & (ix < wd)).astype(np.uint64)              # (W_o, K_w)
            corr = np.zeros((layer.dp.n_acc, c_out, ho, wo), dtype=np.uint64)
            for ky in range(kh):
                for kx in range(kw):
                    corr += wt[:, :, ky, kx, None, None] * (my[None, None, :, ky, None] * mx[None, None, None, :, kx])
            cu = np.array([centre], dtype=np.int64).astype(np.uint64)   # centre modulo 2^64
            self._corr[key] = np.ascontiguousarray((corr * cu).reshape(layer.dp.n_acc, c_out, ho * wo))
        return self._corr[key]
