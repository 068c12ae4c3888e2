"""The portable integer path of a conv layer: integer im2row and ``gemm_i16`` with int32 sums, no BLAS.

Taken when the int path's proof holds (:meth:`sim.plan.GemmWeights.int_exact`, docs/sim.md,
"Integer GEMM path") and no direct byte kernel applies. Its activation-term tables
(:meth:`IntPath.operands`) serve the direct path too.
"""

from __future__ import annotations

import numpy as np

from . import kernels, workshare
from .gemm_path import images_per_block
from .plan import k_pad
from .scratch import Scratch

__all__ = ["IntPath", "INT_TILE_BYTES"]

INT_TILE_BYTES = 64 << 10     # im2row rows per parallel tile, in bytes


class IntPath:
    """The portable int path of one :class:`sim.layers.Conv2d` (its weights from ``layer.int_weights()``)."""

    def __init__(self, layer):
        self.layer = layer
        self.scratch = Scratch()
        self._operands = {}

    def operands(self, xmin, xmax):
        """``(g16, a_max, mats)`` for codes in ``[xmin, xmax]``: the activation-term table, its magnitude, the weights.

        ``g16`` ``(n_t, n_a)`` in the narrowest integer type that holds the terms of the used
        codes (uint8, int8 or int16; the other codes' entries 0), ``a_max`` the largest term
        magnitude, ``mats`` :meth:`sim.plan.GemmWeights.int_matrices`. Kept per code range:
        the tables are read, never written.
        """
        key = (xmin, xmax)
        if key not in self._operands:
            self._operands[key] = self._make_operands(xmin, xmax)
        return self._operands[key]

    def _make_operands(self, xmin, xmax):
        gw = self.layer.int_weights()
        a0 = self.layer.dp.a_range[0]
        lo, hi = xmin - a0, xmax - a0 + 1                   # only codes in [xmin, xmax] are read
        g_used = gw.g_tab[:, lo:hi]
        g_lo, g_hi = min(0, int(g_used.min())), max(0, int(g_used.max()))
        cdt = np.uint8 if g_lo >= 0 and g_hi <= 255 else np.int8 if -128 <= g_lo and g_hi <= 127 else np.int16
        g16 = np.zeros(gw.g_tab.shape, dtype=cdt)
        g16[:, lo:hi] = g_used
        return g16, max(-g_lo, g_hi), gw.int_matrices()

    def __call__(self, x, xmin, xmax, ho, wo):
        """The accumulators ``(n_acc, N, C_out, H_o, W_o)`` of int16 codes ``x`` in ``[xmin, xmax]``."""
        # integer im2col (one row per output position, fan-in contiguous; uint8/int8/int16, the
        # narrowest that holds the transformed codes) and gemm_i16 with int32 sums, both run on one
        # range per thread; no BLAS. Exactness: int_exact (docs/sim.md, "Integer GEMM path").
        layer = self.layer
        gw = layer.int_weights()
        mats = gw.int_matrices()
        nb = x.shape[0]
        c_out, cg_in, kh, kw = layer.w16.shape
        npos = ho * wo
        kt = k_pad(gw.n_t * gw.k)
        a0 = layer.dp.a_range[0]
        g16, _, _ = self.operands(xmin, xmax)
        cdt = g16.dtype
        gemm = kernels.gemm_i16
        out = np.empty((layer.dp.n_acc, nb, c_out, npos), dtype=np.int64)
        itemsize = np.dtype(cdt).itemsize
        blk = images_per_block(nb, kt, npos, itemsize)
        qb = max(4, INT_TILE_BYTES // (itemsize * kt) // 4 * 4)
        for gi in range(layer.groups):
            for n0 in range(0, nb, blk):
                nq = min(blk, nb - n0) * npos
                q4 = (nq + 3) // 4 * 4
                col = self.scratch.get("col", cdt, q4 * kt).reshape(q4, kt)
                col[nq:] = 0                                    # register-block remainder rows
                work = nq * kt * mats[gi].shape[0]

                def rows(r0, r1):
                    kernels.im2row_i16(x, g16, a0, gi, n0, cg_in, kh, kw, layer.stride, layer.padding, ho, wo, col,
                                       r0, r1)

                def tiles(t0, t1):
                    gemm(mats[gi], col, nq, qb, out, gi, gw.cg_out, n0, layer.acc_bits, t0, t1)

                workshare.in_ranges(rows, nq // wo, work)
                workshare.in_ranges(tiles, (mats[gi].shape[0] // 4) * ((q4 + qb - 1) // qb), work)
        return out.reshape(layer.dp.n_acc, nb, c_out, ho, wo)
