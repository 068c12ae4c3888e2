"""The direct path of a conv layer: the byte SIMD kernels of :mod:`sim.direct`, cut into blocks and shares.

Per call: images in blocks whose byte planes stay near DIRECT_BLOCK_BYTES; per block the
output rows (or, with few positions, the row blocks) cut into one share per numba thread,
run by one parallel launch, or on the calling thread below DIRECT_SHARE_MACS (docs/sim.md,
"Direct convolution kernels"). Kept per layer: the packed weights per variant, the
operands per code range, the shares and buffers of the last DIRECT_GEOMETRIES call
geometries.
"""

from __future__ import annotations

import numba
import numpy as np

from . import direct, simd

__all__ = ["DirectPath", "rq_table", "DIRECT_SHARE_MACS", "DIRECT_ROW_SPLIT", "DIRECT_GEOMETRIES",
           "DIRECT_BLOCK_BYTES"]

DIRECT_SHARE_MACS = 1 << 24   # below this many multiply-adds (padded) one thread runs the call
DIRECT_ROW_SPLIT = 256        # calls with at most this many positions are cut by row blocks, not positions
DIRECT_GEOMETRIES = 4         # call geometries (batch, size, threads) whose shares and buffers are kept
DIRECT_BLOCK_BYTES = 32 << 20  # images per block so that one block's byte planes stay near this size


def rq_table(m, b, sh, beta, fb, lo, hi):
    """``(rq, lo, hi)`` of ``direct.requant_rows``: per sample and channel ``M_n`` (section 11), ``B``, ``sh``.

    ``M_n = (M * beta + 2^(fb-1)) >> fb`` (no rounding term for ``fb = 0``), as
    ``sim.netops.requant_layer`` computes it; int64 throughout (``M_n < 2^16``).
    """
    nb, c_out = beta.shape[0], m.shape[0]
    half = (np.int64(1) << np.int64(fb - 1)) if fb >= 1 else np.int64(0)
    rq = np.empty((nb, c_out, m.shape[1] + 2), dtype=np.int64)
    rq[:, :, :-2] = (m[None, :, :] * beta[:, None, None] + half) >> np.int64(fb)
    rq[:, :, -2] = b[None, :]
    rq[:, :, -1] = sh[None, :]
    return rq, lo, hi


class DirectPath:
    """The direct path of one :class:`sim.layers.Conv2d` (its int path's weights and operands)."""

    def __init__(self, layer):
        self.layer = layer
        self._weights = {}        # (variant, spread) -> direct.DirectWeights
        self._operands = {}       # (variant, xmin, xmax) -> operands()
        self._shares = {}         # (variant, spread, N, H_o, W_o, shares, by rows) -> direct.Shares, oldest first

    @property
    def kept_weights(self) -> dict:
        """The packed weights made so far, ``{(variant, spread): direct.DirectWeights}``."""
        return dict(self._weights)

    @property
    def kept_shares(self) -> dict:
        """The kept call geometries, ``{(variant, spread, N, H_o, W_o, shares, by_rows): direct.Shares}``."""
        return dict(self._shares)

    def variant(self, xmin, xmax, order):
        """The first variant of ``order`` that this CPU has and the layer allows for codes in ``[xmin, xmax]``, or None.

        Needs the int path's proof (``int_exact``), unsigned 8-bit activation terms and
        signed 8-bit weights.
        """
        if not simd.VARIANTS or not self.layer.int_exact(xmin, xmax):
            return None
        g16, _, mats = self.layer.int_path.operands(xmin, xmax)
        if g16.dtype != np.uint8 or mats[0].dtype != np.int8:
            return None
        return next((v for v in order if v in simd.VARIANTS), None)

    def spread(self, xmin, xmax, variant):
        """True when ``avx2`` needs a zero byte after every term byte: a pair of products could saturate.

        ``vpmaddubsw`` saturates ``a0*w0 + a1*w1`` to int16; with every second byte 0 each pair is
        one product, at most ``255 * 128 < 2^15``.
        """
        if variant != "avx2":
            return False
        _, a_max, _ = self.layer.int_path.operands(xmin, xmax)
        return 2 * a_max * int(self.layer.int_weights().vabs_used.max(initial=0)) > simd.AVX2_PAIR_LIMIT

    def pair_groups(self, xmin, xmax, spread):
        """``avx2``: how many 4-byte groups' pair sums may be added in int16 lanes before widening.

        Each ``vpmaddubsw`` lane holds a pair sum of magnitude at most ``P = 2 * max|a| * max|w|``
        (``max|a| * max|w|`` when spread); ``m`` of them stay within ``2^15 - 1`` for ``m * P <=
        2^15 - 1``, so their wrapping int16 sum is exact.
        """
        _, a_max, _ = self.layer.int_path.operands(xmin, xmax)
        pair = (1 if spread else 2) * a_max * int(self.layer.int_weights().vabs_used.max(initial=0))
        return max(1, simd.AVX2_PAIR_LIMIT // max(1, pair))

    def __call__(self, x, xmin, xmax, ho, wo, variant, fused):
        """The accumulators ``(n_acc, N, C_out, H_o, W_o)`` of int16 codes ``x`` in ``[xmin, xmax]``, or the codes.

        ``fused``: None, or the table ``(rq, lo, hi)`` of :func:`rq_table`, which returns the
        requantised int16 codes ``(N, C_out, H_o, W_o)`` instead (the int64 accumulators are never written).
        """
        # One share per numba thread (a prange over the shares: one parallel launch per call), each a
        # range of output rows (n, oy), or of row blocks when there are few positions, done start to
        # end on its own buffers: byte planes of the activation terms (channels last, zero padded),
        # the direct tile kernel into an int32 position-major buffer, the wrap and the store.
        # Exactness: int_exact (docs/sim.md, "Direct convolution kernels").
        layer = self.layer
        gw = layer.int_weights()
        dw, g8, gpk, identity, m16, spread = self.operands(variant, xmin, xmax)
        a0 = layer.dp.a_range[0]
        nb = x.shape[0]
        npos = ho * wo
        c_out = layer.w16.shape[0]
        if fused is None:                                 # the int64 accumulators
            out = np.empty((layer.dp.n_acc, nb, c_out, npos), dtype=np.int64)
            y, rq, lo, hi = np.empty((0, 0, npos), np.int16), np.empty((0, 0, layer.dp.n_acc + 2), np.int64), 0, 0
        else:                                             # requantised codes only (sim.netops.requant_layer fused)
            rq, lo, hi = fused
            out = np.empty((layer.dp.n_acc, 0, 0, npos), dtype=np.int64)
            y = np.empty((nb, c_out, npos), dtype=np.int16)
        # images in blocks whose planes stay near DIRECT_BLOCK_BYTES: the memory a call takes is bounded
        per_image = ((ho - 1) * dw.sty + dw.kh) * ((wo - 1) * dw.stx + dw.ktaps_x) * dw.kc
        blk = max(1, min(nb, DIRECT_BLOCK_BYTES // per_image))
        whole_channels = fused is not None and layer.dp.n_acc > 1   # a share must hold every row of a channel
        for n0 in range(0, nb, blk):
            st, n_sh = self.shares(variant, spread, dw, min(blk, nb - n0), ho, wo, whole_channels)
            for gi in range(layer.groups):
                src = (x, g8, gpk, identity, a0, gi, dw.cg_in, layer.padding, dw.fold, dw.suby, dw.subx)
                wt = (dw.packed[gi], dw.kc4, m16, dw.wblk)
                store = (out, y, rq, lo, hi, gw.cg_out, layer.acc_bits, n0)
                if n_sh == 1:                             # the serial share: no parallel region to compile or launch
                    direct.share_kernel(variant)(0, src, st.arrays, wt, store)
                else:
                    direct.parallel_kernel(variant)(src, st.arrays, wt, store)
        if fused is not None:
            return y.reshape(nb, c_out, ho, wo)
        return out.reshape(layer.dp.n_acc, nb, c_out, ho, wo)

    def operands(self, variant, xmin, xmax):
        """``(DirectWeights, g8, gpk, identity, m16, spread)`` of the direct path for codes in ``[xmin, xmax]``.

        Made once per code range and variant and kept: the packed weights, the
        activation-term table (with a zero term after every term when spread), its packed form
        ``gpk`` (a code's ``n_t`` bytes little-endian, ``n_t <= 8``), whether the single term is
        the identity, and the ``avx2`` int16 group count.
        """
        key = (variant, xmin, xmax)
        if key in self._operands:
            return self._operands[key]
        layer = self.layer
        gw = layer.int_weights()
        spread = self.spread(xmin, xmax, variant)
        g8, _, _ = layer.int_path.operands(xmin, xmax)
        if (variant, spread) not in self._weights:
            v8 = gw.v.astype(np.int8)                     # the used values fit (simd_variant); others are never read
            if spread:                                    # a zero term after every term
                v8 = np.stack([v8, np.zeros_like(v8)], axis=1).reshape(-1, *v8.shape[1:])
            c_out, cg_in, kh, kw = layer.w16.shape
            self._weights[variant, spread] = direct.DirectWeights(variant, gw.codes, v8, cg_in, kh, kw, layer.stride)
        dw = self._weights[variant, spread]
        if spread:
            g8 = np.stack([g8, np.zeros_like(g8)], axis=1).reshape(-1, g8.shape[1])
        a0 = layer.dp.a_range[0]
        identity = dw.n_t == 1 and bool((gw.g_tab[0] == np.arange(a0, a0 + gw.g_tab.shape[1])).all())
        gpk = np.zeros(g8.shape[1], dtype=np.uint64)
        for t in range(min(8, dw.n_t)):
            gpk |= g8[t].astype(np.uint64) << np.uint64(8 * t)
        self._operands[key] = (dw, g8, gpk, identity, self.pair_groups(xmin, xmax, spread), spread)
        return self._operands[key]

    def shares(self, variant, spread, dw, nb, ho, wo, whole_channels=False):
        """The shares of a block of ``nb`` images (kept for DIRECT_GEOMETRIES geometries) and their count.

        ``whole_channels``: never cut by row blocks (a fused requantisation needs every accumulator
        of a channel in one share).
        """
        npos = ho * wo
        work = nb * npos * dw.rows * dw.kc * len(dw.packed) * dw.kh * dw.ktaps_x
        n_sh = 1 if work < DIRECT_SHARE_MACS else numba.get_num_threads()
        by_rows = (nb * npos <= DIRECT_ROW_SPLIT and dw.n_ob >= n_sh     # few positions: cut the row blocks
                   and not whole_channels)
        n_sh = min(n_sh, dw.n_ob if by_rows else nb * ho)
        key = (variant, spread, nb, ho, wo, n_sh, by_rows)
        if key not in self._shares:
            if by_rows:
                cut = [dw.n_ob * s // n_sh for s in range(n_sh + 1)]
                parts = [direct.Share(dw, 0, nb * ho, ho, wo, cut[s], cut[s + 1]) for s in range(n_sh)]
            else:
                cut = [nb * ho * s // n_sh for s in range(n_sh + 1)]
                parts = [direct.Share(dw, cut[s], cut[s + 1], ho, wo) for s in range(n_sh)]
            for k in list(self._shares)[:max(0, len(self._shares) + 1 - DIRECT_GEOMETRIES)]:  # the oldest go
                del self._shares[k]
            self._shares[key] = direct.Shares(dw, parts)
        return self._shares[key], n_sh
